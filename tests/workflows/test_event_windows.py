"""Saga v4's timed event windows: what the event log asks of Temporal (timers, appends, in
order) is the same whether a window's timer firing, or an append's completion, is seen before
or after what an update made the saga record at the same moment.

A worker that replays a saga may see such a firing in the same workflow task as a later update,
where the worker that first ran it saw them apart (seen in a chaos run: a review approved while
the saga's worker was killed). The SDK then applies the update first. Only a workflow task that
issued nothing can be seen that way, so these are the cases checked: a timer firing while an
append is in flight, and an append completing with nothing else to store. Saga v3's log fails
the first (an append took whatever had been recorded meanwhile, so a timer could fire with
nothing left to store, and later with something), which is why v4 exists.

The log runs here against a stand-in for ``temporalio.workflow`` (a clock the test sets, timers
and appends the test completes), so each ordering can be played exactly.
"""

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
WINDOW = timedelta(seconds=1)


class Temporal:
    """What the log sees of Temporal: ``now``, timers and activities, each recorded as the
    command it would be, in the order issued."""

    def __init__(self) -> None:
        self.clock = T0
        self.commands: list[tuple[str, Any]] = []
        self.timers: list[asyncio.Future[None]] = []
        self.appends: list[asyncio.Future[None]] = []

    def now(self) -> datetime:
        return self.clock

    async def sleep(self, duration: timedelta, summary: str | None = None) -> None:
        self.commands.append(("timer", len(self.timers) + 1))
        self.timers.append(asyncio.get_running_loop().create_future())
        await self.timers[-1]

    async def execute_activity(self, name: str, batch: Any, **_: Any) -> None:
        self.commands.append(("append", [event.sequence for event in batch.events]))
        self.appends.append(asyncio.get_running_loop().create_future())
        await self.appends[-1]


async def settle() -> None:
    """Let every task that can run, run (the end of an activation)."""
    for _ in range(20):
        await asyncio.sleep(0)


Step = Callable[["Temporal", EventLog], Awaitable[None] | None]


async def play(
    monkeypatch: pytest.MonkeyPatch, before: list[Step], together: list[Step], after: list[Step]
) -> list[tuple[str, Any]]:
    """Run ``before``, then the steps of one moment ``together`` in the given order, then
    ``after``; each step then settles. The commands issued, in order."""
    temporal = Temporal()
    monkeypatch.setattr(event_log, "workflow", temporal)
    log = EventLog("order-1")
    log.window, log.timed = WINDOW, True
    for group in (before, together, after):
        for step in group:
            outcome = step(temporal, log)
            if outcome is not None:
                await outcome
            await settle()
    return temporal.commands


def at(seconds: float) -> Step:
    def step(temporal: Temporal, log: EventLog) -> None:
        temporal.clock = T0 + timedelta(seconds=seconds)

    return step


def record(event_type: EventType = EventType.INVENTORY_RESERVED) -> Step:
    def step(temporal: Temporal, log: EventLog) -> None:
        log.record(event_type, by="system")

    return step


def fire(timer: int) -> Step:
    def step(temporal: Temporal, log: EventLog) -> None:
        temporal.timers[timer - 1].set_result(None)

    return step


def complete(append: int) -> Step:
    def step(temporal: Temporal, log: EventLog) -> None:
        temporal.appends[append - 1].set_result(None)

    return step


def end() -> Step:
    """The saga's end: everything recorded is stored (the appends completed as they come)."""

    async def step(temporal: Temporal, log: EventLog) -> None:
        ending = asyncio.ensure_future(log.stored())
        for _ in range(10):
            await settle()
            for future in temporal.appends:
                if not future.done():
                    future.set_result(None)
        await settle()
        assert ending.done(), "the log never finished storing"

    return step


async def both_orders(
    monkeypatch: pytest.MonkeyPatch, before: list[Step], shifted: Step, update: list[Step]
) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """The commands with ``shifted`` seen on its own before the update's steps, and seen
    together with them, after (as the SDK applies an update first)."""
    apart = await play(monkeypatch, before, [shifted, *update], [end()])
    together = await play(monkeypatch, before, [*update, shifted], [end()])
    return apart, together


async def test_a_timer_firing_while_an_append_runs_is_the_same_before_or_after_an_update(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    apart, together = await both_orders(
        monkeypatch,
        # A window stored (append 1 in flight), a second window open since 1.5 s.
        before=[at(0), record(), at(1.1), fire(1), at(1.5), record()],
        shifted=fire(2),  # at 3 s, while append 1 still runs: nothing to issue
        update=[at(5), record(EventType.PAYMENT_REVIEWED), complete(1)],
    )
    assert apart == together
    assert [c for c in apart if c[0] == "append"] == [
        ("append", [1]),
        ("append", [2]),
        ("append", [3]),
    ]


async def test_an_append_completing_with_nothing_closed_is_the_same_before_or_after_an_update(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    apart, together = await both_orders(
        monkeypatch,
        before=[at(0), record(), at(1.1), fire(1)],  # append 1 in flight
        shifted=complete(1),  # nothing else closed: nothing to issue
        update=[at(5), record(EventType.PAYMENT_REVIEWED)],
    )
    assert apart == together
    assert apart == [("timer", 1), ("append", [1]), ("timer", 2), ("append", [2])]


async def test_an_order_that_ends_within_its_window_is_one_append(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    commands = await play(
        monkeypatch, [at(0), record(), at(0.2), record(), at(0.4), record()], [], [end()]
    )
    assert commands == [("timer", 1), ("append", [1, 2, 3])]


async def test_events_after_a_window_closes_open_the_next_and_keep_their_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    commands = await play(
        monkeypatch,
        [at(0), record(), at(0.5), record(), at(1.0), record(), at(1.2), fire(1)],
        [at(1.3), record(), fire(2)],
        [end()],
    )
    # 0 s and 0.5 s share the first window; 1.0 s opened the second (the first had run out,
    # though its timer fired later): each window one append, in order.
    assert commands == [("timer", 1), ("timer", 2), ("append", [1, 2]), ("append", [3, 4])]
