"""The saga's event log: it records each transition as an order event, in order.

``record`` is synchronous: the saga never waits for the event store between its steps. One
background appender sends what has been recorded to the store (an activity on the saga's own
task queue, batching what accumulated meanwhile) while the next step runs; before the saga ends
it waits until everything is stored. Event ids derive from the order id and sequence, so a
retried or replayed append stores nothing twice.

A regular activity, not a local one, in both step modes: Temporal sees it (in the history and
the Web UI), and it is eagerly dispatched to this worker, which keeps it cheap. Measured with
local steps (bench/step_modes.py, 2026-11): local appends saved about a tenth of a saga's
latency one at a time, but cost about a third of the throughput at concurrency 20, where an
append running beside the steps, outside the workflow task, batches more.
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
        if self._appender is None or self._appender.done():
            self._appender = asyncio.create_task(self._append_pending())

    async def stored(self) -> None:
        """Wait until every recorded event is in the store (an append's failure is raised)."""
        while True:
            if self._appender is not None and not self._appender.done():
                await self._appender
            elif self._pending:  # left by an appender that failed: try them again
                self._appender = asyncio.create_task(self._append_pending())
            else:
                return

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
