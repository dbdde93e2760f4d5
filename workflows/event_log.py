"""The saga's event log: it records each transition as an order event, in order.

``record`` is synchronous: the saga never waits for the event store between its steps. One
background appender sends what has been recorded to the store (an activity on the saga's own
task queue, batching what accumulated meanwhile) while the next steps run; before the saga ends
it waits until everything is stored. Event ids derive from the order id and sequence, so a
retried or replayed append stores nothing twice.

With a ``window`` (sagas started since the lean-history patch), recorded events wait up to that
long to be batched with later ones: a saga that ends within the window stores all its events in
one append at its end; one that waits longer (a payment review, a step retrying) has them
stored when the window's timer fires. The timer is never cancelled (a saga that ends first just
leaves it): cancelling a timer as it fires is a race that Temporal's time-skipping test server
mishandles ("invalid history builder state for action"). Without a window (older sagas), each
append starts as soon as the previous one ends: about seven appends per order, each an activity
and a workflow task more (bench/where_time_goes.py).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
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
        self._ending = False
        self._window: asyncio.Task[None] | None = None

    def record(self, event_type: EventType, by: str, **data: Any) -> None:
        """Record that ``event_type`` happened (caused by ``by``: a customer, an operator, the
        saga itself), with ``data``."""
        if not self.enabled:
            return
        self._sequence += 1
        self._pending.append(
            Event(
                event_id=event_id(self._order_id, self._sequence),
                aggregate_id=self._order_id,
                sequence=self._sequence,
                event_type=event_type,
                data=data,
                version=CURRENT_VERSION[event_type],
                occurred_at=workflow.now(),
                user_id=by,
            )
        )
        if self.window is None or self._ending:
            self._start_appender()
        elif self._window is None or self._window.done():
            self._window = asyncio.create_task(self._append_after(self.window))

    async def stored(self) -> None:
        """Wait until every recorded event is in the store (an append's failure is raised).
        From here on, events are appended as they are recorded."""
        self._ending = True
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
        await workflow.execute_activity(
            APPEND_EVENTS.name,
            AppendEvents(events=batch),
            result_type=APPEND_EVENTS.result_type,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=APPEND_RETRY,
            summary=", ".join(e.event_type for e in batch)[:200],
        )
