"""The saga's event log: it records each transition as an order event, in order.

``record`` is synchronous: the saga never waits for the event store between its steps. A
background appender sends what has been recorded to the store (an activity on the saga's own
task queue) while the next steps run; before the
saga ends it waits until everything is stored. Event ids derive from the order id and sequence,
so a retried or replayed append stores nothing twice.

Five generations, each kept for the sagas started under it:

- **Windows closed by the saga** (saga v8). An event joins the open window; the saga itself
  closes it, at the points where it would otherwise keep events waiting: before it waits for a
  person (a payment review, an operator for a stuck compensation), and when a step or a
  compensation has run for a window without ending (its first round is given the window as its
  schedule-to-close timeout; the saga stores what it has, then runs the step on). No timer:
  every append is issued by the saga's own sequence of steps, in response to one of its own
  events. Why that matters: a worker asked for a saga's state (a query) while the saga's next
  workflow task is pending can run that task's events there and then, and the task itself may
  bring more; a replay sees all of them in one task. With a window's timer racing a step (v5),
  the order of the commands then depended on that split (a chaos run found it, see the
  README); with one sequence issuing them, it cannot.
- **Windows closed by their timers** (saga v5, the ``timer-windows`` patch). An event opens a
  window unless one is open, and joins it; the window's timer closes it and starts its append
  at once, even while an earlier window's append still runs (the store refuses a batch that
  would leave a gap, and the append is retried until the earlier one is in: the order holds).
  No choice reads the clock, and every timer firing issues a command. Both matter on replay:
  a restarted worker asked for a saga's state (a query) can run the saga's pending events
  there and then, with the *previous* workflow task's time, and send their commands with the
  next task, whose own time a replay sees instead (v4's time-based choices then differed from
  the history: a nondeterminism error, found by a chaos run); and a workflow task that issued
  nothing can be replayed together with a later update, which the SDK applies first (v3's
  flaw). Here only an append's completion issues nothing, and nothing but the end waits on it.
- **Timed windows** (v4, ``event-windows``). As v5, but an event joined the open window if it
  came less than ``window`` (by workflow time) after the window opened, and windows were
  stored one at a time. Robust to the update ordering, not to the stale time.
- **Batched** (v3, ``lean-history``): events wait up to ``window`` for a timer, and an append
  also takes whatever was recorded while the previous one ran.
- **One by one** (older sagas, no window): each append starts as soon as the previous one ends.

The timers are never cancelled (a saga that ends first just leaves them): cancelling a timer as
it fires is a race that Temporal's time-skipping test server mishandles ("invalid history
builder state for action").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from cloudmart.contracts.activities import APPEND_EVENTS
    from cloudmart.contracts.events import CURRENT_VERSION, AppendEvents, Event, EventType, event_id

APPEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
"""The store may be down for a while: appends retry until it is back."""


@dataclass(eq=False)
class _Window:
    """Events recorded within ``window`` of the first, to be stored in one append."""

    closes_at: datetime
    events: list[Event] = field(default_factory=list)
    closed: bool = False
    timer: asyncio.Task[None] | None = None


class EventLog:
    def __init__(self, order_id: str) -> None:
        self._order_id = order_id
        self._sequence = 0
        self._pending: list[Event] = []
        self._appender: asyncio.Task[None] | None = None
        self.enabled = True
        """False for a saga started before the event log existed: it records nothing."""
        self.window: timedelta | None = None
        """How long recorded events may wait to be batched with later ones (None: not at all)."""
        self.timed = False
        """Saga v4: timed windows (see the module's docstring); needs ``window``."""
        self.timer_windows = False
        """Saga v5: windows closed by their timers (see the module's docstring); needs
        ``window``."""
        self.closed_by_saga = False
        """Saga v8: windows are closed by ``flush`` alone, never by a timer (see the module's
        docstring); needs ``timer_windows``."""
        self._ending = False
        self._window: asyncio.Task[None] | None = None
        self._unclosed: list[_Window] = []
        self._closed: list[_Window] = []
        """Closed windows not yet stored, oldest first; the head is being appended."""
        self._open: list[Event] | None = None
        """v5: the open window's events."""
        self._timer: asyncio.Task[None] | None = None
        self._at_end: list[Event] = []
        self._appends: list[asyncio.Task[None]] = []
        """v5: every append started, in order."""

    def record(self, event_type: EventType, by: str, **data: Any) -> None:
        """Record that ``event_type`` happened (caused by ``by``: a customer, an operator, the
        saga itself), with ``data``."""
        if not self.enabled:
            return
        self._sequence += 1
        event = Event(
            event_id=event_id(self._order_id, self._sequence),
            aggregate_id=self._order_id,
            sequence=self._sequence,
            event_type=event_type,
            data=data,
            version=CURRENT_VERSION[event_type],
            occurred_at=workflow.now(),
            user_id=by,
        )
        if self.timer_windows:
            self._record_until_timer(event)
            return
        if self.timed:
            self._record_in_window(event)
            return
        self._pending.append(event)
        if self.window is None or self._ending:
            self._start_appender()
        elif self._window is None or self._window.done():
            self._window = asyncio.create_task(self._append_after(self.window))

    async def stored(self) -> None:
        """Wait until every recorded event is in the store (an append's failure is raised).
        From here on, events are appended as they are recorded."""
        self._ending = True
        if self.timer_windows:
            await self._stored_in_order()
            return
        if self.timed:
            await self._windows_stored()
            return
        while True:
            if self._appender is not None and not self._appender.done():
                await self._appender
            elif self._pending:  # not sent yet, or left by an appender that failed
                self._start_appender()
            else:
                return

    async def _append_after(self, window: timedelta) -> None:
        await workflow.sleep(window, summary="store events")
        if not self._ending:  # else the end sends them (and awaits the appender itself)
            self._start_appender()

    def _start_appender(self) -> None:
        if self._pending and (self._appender is None or self._appender.done()):
            self._appender = asyncio.create_task(self._append_pending())

    async def _append_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._append(batch)
            except BaseException:
                # Never lost: the next appender (or ``stored``) sends the batch again first.
                self._pending = batch + self._pending
                raise

    async def _append(self, batch: list[Event]) -> None:
        options: dict[str, Any] = {
            "result_type": APPEND_EVENTS.result_type,
            "start_to_close_timeout": timedelta(seconds=10),
            "retry_policy": APPEND_RETRY,
            "summary": ", ".join(e.event_type for e in batch)[:200],
        }
        await workflow.execute_activity(APPEND_EVENTS.name, AppendEvents(events=batch), **options)

    # --- timed windows (saga v4) -------------------------------------------------------------

    def _record_in_window(self, event: Event) -> None:
        latest = self._unclosed[-1] if self._unclosed else None
        if self._ending:  # the end stores events as they come, each closed at once
            self._close(_Window(closes_at=event.occurred_at, events=[event]))
        elif latest is not None and event.occurred_at < latest.closes_at:
            latest.events.append(event)
        else:
            assert self.window is not None
            opened = _Window(closes_at=event.occurred_at + self.window, events=[event])
            self._unclosed.append(opened)
            opened.timer = asyncio.create_task(self._close_after(opened, self.window))

    async def _close_after(self, window: _Window, duration: timedelta) -> None:
        await workflow.sleep(duration, summary="store events")
        self._close(window)

    def _close(self, window: _Window) -> None:
        if window.closed:  # the end closed it first
            return
        window.closed = True
        if window in self._unclosed:
            self._unclosed.remove(window)
        self._closed.append(window)
        if self._appender is None or self._appender.done():
            self._appender = asyncio.create_task(self._append_closed())

    async def _append_closed(self) -> None:
        while self._closed:
            # Removed once stored: after a failure, the next appender sends it again first.
            await self._append(self._closed[0].events)
            self._closed.pop(0)

    async def _windows_stored(self) -> None:
        for window in list(self._unclosed):
            self._close(window)
        while True:
            if self._appender is not None and not self._appender.done():
                await self._appender
            elif self._closed:  # left by an appender that failed
                self._appender = asyncio.create_task(self._append_closed())
            else:
                return

    # --- windows closed by their timers (saga v5) --------------------------------------------

    def _record_until_timer(self, event: Event) -> None:
        if self._ending:  # ``stored`` sends these itself
            self._at_end.append(event)
        elif self._open is not None:
            self._open.append(event)
        else:
            self._open = [event]
            if not self.closed_by_saga:
                self._timer = asyncio.create_task(self._append_when_timer_fires(self._open))

    @property
    def waiting(self) -> bool:
        """Whether events recorded are waiting for their window to close (v5 and on)."""
        return bool(self._open)

    def flush(self) -> None:
        """Saga v8: close the open window and start its append now (the saga is about to wait,
        or a step has run for a window); older sagas' windows close by their timers alone."""
        if self.closed_by_saga and self._open and not self._ending:
            window, self._open = self._open, None
            self._start_append(window)

    async def _append_when_timer_fires(self, window: list[Event]) -> None:
        assert self.window is not None
        await workflow.sleep(self.window, summary="store events")
        if window is self._open:  # else the end took it
            self._open = None
            self._start_append(window)

    def _start_append(self, events: list[Event]) -> None:
        self._appends.append(asyncio.create_task(self._append(events)))

    async def _stored_in_order(self) -> None:
        # Each append in flight first (so the last one never waits for the store to refuse
        # it), then whatever is left, in one append; a timer firing meanwhile appends its own.
        while True:
            running = next((task for task in self._appends if not task.done()), None)
            if running is not None:
                await running
                continue
            for task in self._appends:
                task.result()  # an append that failed (they retry until cancelled) fails the end
            rest = (self._open or []) + self._at_end
            self._open, self._at_end = None, []
            if not rest:
                return
            self._start_append(rest)
