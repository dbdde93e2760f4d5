"""The saga's event log: each transition of the order, recorded as an event, stored in order.

``record`` is synchronous: the saga never waits for the event store between its steps. Recorded
events wait in the open window, and the saga itself decides when they are stored (``flush``):

- before it waits for a person (a payment review; an operator, once a compensation is stuck);
- when a step has run for the events window without ending (see ``StepRunner.run``);
- at its end (``stored``), which waits until every event is in the store.

So an order whose steps each end within the window stores its whole story in one append. Every
append is started by the saga's own sequence of steps, never by a timer: a timer would be a
second source of commands, and a replay could then see the two in another order than the
worker that first ran them (docs/events-and-cqrs.md tells the story).

An append is an activity on the saga's own task queue, so Temporal hands it straight back to
this worker. Event ids derive from the order id and the sequence: a retried or replayed append
stores nothing twice, and the store refuses a batch that would leave a gap in the order's
sequence (retried until the earlier batch is in), so events reach it in order.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from cloudmart.contracts.activities import APPEND_EVENTS
    from cloudmart.contracts.events import CURRENT_VERSION, AppendEvents, Event, EventType, event_id

from workflows.retry_policies import APPEND_RETRY, STEP_TIMEOUT


class EventLog:
    def __init__(self, order_id: str, window: timedelta) -> None:
        self.window = window
        """How long a step may run while recorded events wait to be stored."""
        self._order_id = order_id
        self._sequence = 0
        self._open: list[Event] = []
        self._appends: list[asyncio.Task[None]] = []
        """Every append started, in order."""

    def record(self, event_type: EventType, by: str, **data: Any) -> None:
        """Record that ``event_type`` happened, caused by ``by`` (a customer, an operator, the
        saga itself), with ``data``."""
        self._sequence += 1
        self._open.append(
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

    @property
    def waiting(self) -> bool:
        """Whether recorded events wait to be stored."""
        return bool(self._open)

    def flush(self) -> None:
        """Start storing the events that wait, now."""
        if self._open:
            batch, self._open = self._open, []
            self._appends.append(asyncio.create_task(self._append(batch)))

    async def stored(self) -> None:
        """Wait until every recorded event is in the store (an append's failure is raised)."""
        while True:
            # The appends in flight first, so that the last one never waits for the store to
            # refuse it as out of order; then whatever is left, in one.
            running = next((append for append in self._appends if not append.done()), None)
            if running is not None:
                await running
                continue
            for append in self._appends:
                append.result()
            if not self._open:
                return
            self.flush()

    async def _append(self, batch: list[Event]) -> None:
        await workflow.execute_activity(
            APPEND_EVENTS.name,
            AppendEvents(events=batch),
            result_type=APPEND_EVENTS.result_type,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=APPEND_RETRY,
            summary=", ".join(event.event_type for event in batch)[:200],
        )
