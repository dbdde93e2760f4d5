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


V4, V5, V8 = "v4", "v5", "v8"


async def play(
    monkeypatch: pytest.MonkeyPatch,
    before: list[Step],
    together: list[Step],
    after: list[Step],
    saga: str = V4,
) -> list[tuple[str, Any]]:
    """Run ``before``, then the steps of one moment ``together`` in the given order, then
    ``after``; each step then settles. The commands that ``saga``'s log issued, in order."""
    temporal = Temporal()
    monkeypatch.setattr(event_log, "workflow", temporal)
    log = EventLog("order-1")
    log.window = WINDOW
    if saga in (V5, V8):
        log.timer_windows = True
        log.closed_by_saga = saga == V8
    else:
        log.timed = True
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


def flush() -> Step:
    """Saga v8: the saga closes the open window (it is about to wait, or a step ran long)."""

    def step(temporal: Temporal, log: EventLog) -> None:
        log.flush()

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
    monkeypatch: pytest.MonkeyPatch,
    before: list[Step],
    shifted: Step,
    update: list[Step],
    saga: str = V4,
) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """The commands with ``shifted`` seen on its own before the update's steps, and seen
    together with them, after (as the SDK applies an update first)."""
    apart = await play(monkeypatch, before, [shifted, *update], [end()], saga)
    together = await play(monkeypatch, before, [*update, shifted], [end()], saga)
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


# --- saga v5: windows closed by their timers, no clock -----------------------------------------


async def test_an_event_recorded_with_the_previous_tasks_time_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A restarted worker asked for the saga's state can run its pending events with the
    previous workflow task's time (here 0.5 s), where a replay sees the task's own (1.5 s): v5
    issues the same commands either way. v4 did not (the chaos run's nondeterminism): by the
    task's time the window had run out, so the event opened a second one, with a timer."""
    window_open = [at(0), record()]
    then = [record(EventType.INVENTORY_RESERVATION_FAILED), fire(1)]
    for saga in (V4, V5):
        stale = await play(monkeypatch, window_open, [at(0.5), *then], [end()], saga)
        own = await play(monkeypatch, window_open, [at(1.5), *then], [end()], saga)
        if saga == V5:
            assert stale == own == [("timer", 1), ("append", [1, 2])]
        else:
            assert stale != own  # the bug v5 fixes, kept on show


async def test_v5_an_append_completing_is_the_same_before_or_after_an_update(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In v5 a completion is the only thing that issues nothing (so the only thing a replay
    can see after a later update), and it changes no choice."""
    apart, together = await both_orders(
        monkeypatch,
        before=[record(), fire(1), record(), fire(2)],  # appends 1 and 2 in flight
        shifted=complete(1),
        update=[record(EventType.PAYMENT_REVIEWED)],
        saga=V5,
    )
    assert apart == together
    assert apart == [
        ("timer", 1),
        ("append", [1]),
        ("timer", 2),
        ("append", [2]),
        ("timer", 3),
        ("append", [3]),
    ]


async def test_v5_every_timer_firing_appends_at_once_even_while_an_append_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """So no firing is a workflow task that issued nothing; the store keeps the order (a batch
    that would leave a gap is refused and retried: test_event_store.py)."""
    commands = await play(
        monkeypatch, [at(0), record(), at(0.2), record(), fire(1)], [at(9), record()], [], V5
    )
    assert commands == [("timer", 1), ("append", [1, 2]), ("timer", 2)]
    commands = await play(
        monkeypatch,
        [record(), fire(1), record(), record()],
        [fire(2)],
        [],
        V5,  # 1 in flight
    )
    assert commands == [("timer", 1), ("append", [1]), ("timer", 2), ("append", [2, 3])]


async def test_v5_an_order_that_ends_within_its_window_is_one_append(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    commands = await play(monkeypatch, [record(), record(), record()], [], [end()], V5)
    assert commands == [("timer", 1), ("append", [1, 2, 3])]


async def test_v5_the_end_waits_for_the_append_in_flight_then_stores_the_rest_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    temporal = Temporal()
    monkeypatch.setattr(event_log, "workflow", temporal)
    log = EventLog("order-1")
    log.window, log.timer_windows = WINDOW, True
    log.record(EventType.ORDER_PLACED, by="c-1")
    await settle()
    temporal.timers[0].set_result(None)
    await settle()
    log.record(EventType.INVENTORY_RESERVED, by="system")
    ending = asyncio.ensure_future(log.stored())
    await settle()
    log.record(EventType.ORDER_COMPLETED, by="system")  # recorded as the saga ends
    await settle()
    assert temporal.commands == [("timer", 1), ("append", [1]), ("timer", 2)]  # waiting
    temporal.appends[0].set_result(None)
    await settle()
    assert temporal.commands[-1] == ("append", [2, 3])
    assert not ending.done()
    temporal.appends[1].set_result(None)
    await settle()
    assert ending.done() and ending.result() is None
    temporal.timers[1].set_result(None)  # the second window's timer, left pending
    await settle()
    assert len(temporal.commands) == 4  # the end took its window: nothing appended twice


# --- saga v8: windows closed by the saga --------------------------------------------------------


async def test_v8_starts_no_timer_and_stores_an_order_that_never_waits_in_one_append(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    commands = await play(
        monkeypatch, [at(0), record(), at(5), record(), at(60), record()], [], [end()], V8
    )
    assert commands == [("append", [1, 2, 3])]


async def test_v8_stores_what_waits_when_the_saga_flushes_and_the_rest_at_its_end_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    commands = await play(
        monkeypatch,
        [at(0), record(), record(), flush(), flush()],  # the second: nothing waits any more
        [at(1), record()],  # while the first append still runs
        [end()],
        V8,
    )
    assert commands == [("append", [1, 2]), ("append", [3])]


async def test_a_flush_changes_nothing_for_a_saga_whose_timers_close_its_windows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    commands = await play(monkeypatch, [at(0), record(), flush()], [], [end()], V5)
    assert commands == [("timer", 1), ("append", [1])]
