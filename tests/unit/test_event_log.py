"""The saga's event log, against a stand-in for ``temporalio.workflow``: which appends it asks
of Temporal, with which events, in which order. No timer, ever: every append is started by the
saga (a flush, or its end), so a replay that sees a workflow task's events grouped otherwise
than the first run did still issues the same commands."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cloudmart.contracts.events import EventType
from workflows import event_log
from workflows.event_log import EventLog

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Temporal:
    """What the log sees of Temporal: the clock, and activities it starts, each recorded as the
    command it would be, in the order issued; the test completes (or fails) them."""

    def __init__(self) -> None:
        self.clock = T0
        self.commands: list[list[int]] = []
        self.appends: list[asyncio.Future[None]] = []

    def now(self) -> datetime:
        return self.clock

    async def sleep(self, *_: Any, **__: Any) -> None:
        raise AssertionError("the event log starts no timer")

    async def execute_activity(self, name: str, batch: Any, **_: Any) -> None:
        assert name == "event_store.append"
        self.commands.append([event.sequence for event in batch.events])
        self.appends.append(asyncio.get_running_loop().create_future())
        await self.appends[-1]


@pytest.fixture
def temporal(monkeypatch: pytest.MonkeyPatch) -> Temporal:
    stand_in = Temporal()
    monkeypatch.setattr(event_log, "workflow", stand_in)
    return stand_in


async def settle() -> None:
    """Let every task that can run, run (the end of an activation)."""
    for _ in range(20):
        await asyncio.sleep(0)


def record(log: EventLog, times: int = 1) -> None:
    for _ in range(times):
        log.record(EventType.INVENTORY_RESERVED, by="system")


async def stored(temporal: Temporal, log: EventLog, answer: Callable[[int], None]) -> None:
    """The saga's end: ``answer(n)`` completes (or fails) the n-th append as it comes."""
    ending = asyncio.ensure_future(log.stored())
    answered = 0
    for _ in range(10):
        await settle()
        while answered < len(temporal.appends):
            answer(answered)
            answered += 1
    await settle()
    assert ending.done(), "the log never finished storing"
    ending.result()


def complete(temporal: Temporal) -> Callable[[int], None]:
    return lambda n: temporal.appends[n].set_result(None)


async def test_an_order_that_never_waits_is_one_append_at_its_end(temporal: Temporal) -> None:
    log = EventLog("order-1", timedelta(seconds=1))
    record(log)
    temporal.clock += timedelta(minutes=5)  # however long it took: nothing but the saga decides
    record(log, 2)
    await settle()
    assert temporal.commands == []
    await stored(temporal, log, complete(temporal))
    assert temporal.commands == [[1, 2, 3]]


async def test_a_flush_stores_what_waits_and_the_end_stores_the_rest_in_order(
    temporal: Temporal,
) -> None:
    log = EventLog("order-1", timedelta(seconds=1))
    record(log, 2)
    assert log.waiting
    log.flush()
    log.flush()  # nothing waits any more: no append
    assert not log.waiting
    await settle()
    record(log)  # while the first append still runs
    await stored(temporal, log, complete(temporal))
    assert temporal.commands == [[1, 2], [3]]


async def test_the_end_waits_for_the_append_in_flight_before_it_stores_the_rest(
    temporal: Temporal,
) -> None:
    log = EventLog("order-1", timedelta(seconds=1))
    record(log)
    log.flush()
    record(log)
    ending = asyncio.ensure_future(log.stored())
    await settle()
    assert temporal.commands == [[1]]  # not [2] beside it: the store would refuse the gap
    temporal.appends[0].set_result(None)
    await settle()
    assert temporal.commands == [[1], [2]]
    temporal.appends[1].set_result(None)
    await settle()
    assert ending.done()


async def test_an_append_that_fails_fails_the_end(temporal: Temporal) -> None:
    log = EventLog("order-1", timedelta(seconds=1))
    record(log)

    def refuse(n: int) -> None:
        temporal.appends[n].set_exception(RuntimeError("the store refused it"))

    with pytest.raises(RuntimeError, match="refused"):
        await stored(temporal, log, refuse)


async def test_events_carry_their_order_its_sequence_and_who_caused_them(
    temporal: Temporal,
) -> None:
    log = EventLog("order-1", timedelta(seconds=1))
    log.record(EventType.ORDER_PLACED, by="c-42", customer_id="c-42")
    log.record(EventType.ORDER_CANCELLED, by="operator", reason="asked by phone")
    batches: list[Any] = []
    original: Callable[..., Awaitable[None]] = temporal.execute_activity

    async def capture(name: str, batch: Any, **options: Any) -> None:
        batches.append(batch)
        await original(name, batch, **options)

    temporal.execute_activity = capture  # type: ignore[method-assign]
    await stored(temporal, log, complete(temporal))
    events = batches[0].events
    assert [(e.sequence, e.event_type, e.user_id) for e in events] == [
        (1, "OrderPlaced", "c-42"),
        (2, "OrderCancelled", "operator"),
    ]
    assert events[0].event_id != events[1].event_id
    assert all(e.aggregate_id == "order-1" and e.occurred_at == T0 for e in events)
