"""The console's live order feed (api/console/feed.py): one watch per order whatever the number
of viewers, a snapshot pushed only when it changed, nothing asked once the order has ended or
its last viewer has left."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest

from api.console.feed import OrderFeed, Snapshot

INTERVAL = 0.01
WAIT = 0.5
"""How long a test waits for something that should happen within a few intervals."""

Step = Snapshot | Exception


def snapshot(order_id: str, status: str = "RUNNING", events: int = 0) -> Snapshot:
    return Snapshot(
        order={"order_id": order_id, "status": status},
        events=[{"type": "Event", "sequence": sequence} for sequence in range(events)],
    )


class FakeOrders:
    """The fetch function: each order's snapshots as scripted, one step per call, the last step
    repeated once the script runs out; each answer a fresh copy (equal, never the same object)."""

    def __init__(self, scripts: dict[str, list[Step]]) -> None:
        self.scripts = scripts
        self.calls: Counter[str] = Counter()

    async def __call__(self, order_id: str) -> Snapshot:
        script = self.scripts[order_id]
        step = script[min(self.calls[order_id], len(script) - 1)]
        self.calls[order_id] += 1
        if isinstance(step, Exception):
            raise step
        return copy.deepcopy(step)


def growing(order_id: str, rounds: int = 200) -> list[Step]:
    """An order that changes every round and never ends."""
    return [snapshot(order_id, events=events) for events in range(rounds)]


async def eventually(condition: Callable[[], bool]) -> None:
    """Polls for ``condition`` (the feed signals nothing to wait on) for up to WAIT."""
    step = INTERVAL / 4
    for _ in range(round(WAIT / step)):
        if condition():
            return
        await asyncio.sleep(step)
    assert condition()


async def read(stream: AsyncIterator[Snapshot], count: int) -> list[Snapshot]:
    async with asyncio.timeout(WAIT):
        return [await anext(stream) for _ in range(count)]


def watch_tasks(started: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    """The watches' polling tasks started since ``started`` was taken (the event loop is the
    session's: other tests' tasks may be running too)."""
    return {
        task
        for task in asyncio.all_tasks() - started
        if getattr(task.get_coro(), "__qualname__", None) == "OrderFeed._run"
    }


def watch_task(started: set[asyncio.Task[object]]) -> asyncio.Task[object]:
    (task,) = watch_tasks(started)
    return task


async def test_many_viewers_of_one_order_cost_one_fetch_per_interval() -> None:
    viewers, rounds = 20, 3
    fake = FakeOrders({"o-1": growing("o-1")})
    feed = OrderFeed(fake, interval=INTERVAL)

    async def viewer() -> list[Snapshot]:
        async with contextlib.aclosing(feed.follow("o-1")) as stream:
            return await read(stream, rounds)

    seen = await asyncio.gather(*(viewer() for _ in range(viewers)))

    assert all(len(set(map(repr, snapshots))) == rounds for snapshots in seen)
    assert seen == [seen[0]] * viewers
    assert feed.fetches == fake.calls["o-1"]
    assert fake.calls["o-1"] <= rounds + 2
    assert fake.calls["o-1"] * 10 < viewers * rounds
    assert feed.watched == 0


async def test_a_viewer_gets_a_snapshot_only_when_it_changed() -> None:
    first, changed = snapshot("o-1"), snapshot("o-1", events=1)
    fake = FakeOrders({"o-1": [first, first, first, changed, changed, changed, changed]})
    feed = OrderFeed(fake, interval=INTERVAL)
    seen: list[Snapshot] = []

    async def viewer() -> None:
        async for received in feed.follow("o-1"):
            seen.append(received)

    task = asyncio.create_task(viewer())
    await eventually(lambda: fake.calls["o-1"] >= 9)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    assert seen == [first, changed]
    assert feed.watched == 0


@pytest.mark.parametrize("status", ["COMPLETED", "FAILED", "CANCELLED"])
async def test_following_ends_after_the_snapshot_in_which_the_order_ended(status: str) -> None:
    running, ended = snapshot("o-1"), snapshot("o-1", status, events=3)
    fake = FakeOrders({"o-1": [running, ended]})
    feed = OrderFeed(fake, interval=INTERVAL)
    # A second viewer keeps the watch open: it is the order's end that stops the fetching.
    idle = feed.follow("o-1")
    assert await read(idle, 1) == [running]

    async with asyncio.timeout(WAIT):
        seen = [received async for received in feed.follow("o-1")]

    assert seen == [running, ended]
    assert fake.calls["o-1"] == 2
    await asyncio.sleep(5 * INTERVAL)
    assert fake.calls["o-1"] == 2
    assert feed.watched == 1
    await idle.aclose()
    assert feed.watched == 0


async def test_a_viewer_joining_a_running_watch_gets_its_last_snapshot_at_once() -> None:
    current = snapshot("o-1", events=2)
    fake = FakeOrders({"o-1": [current]})
    feed = OrderFeed(fake, interval=INTERVAL)
    async with contextlib.aclosing(feed.follow("o-1")) as first:
        assert await read(first, 1) == [current]
        calls = fake.calls["o-1"]
        async with contextlib.aclosing(feed.follow("o-1")) as second:
            assert await read(second, 1) == [current]
            assert fake.calls["o-1"] == calls
    assert feed.watched == 0


async def test_a_failing_fetch_does_not_end_the_viewers_stream() -> None:
    first, second = snapshot("o-1"), snapshot("o-1", "COMPLETED", events=1)
    fake = FakeOrders(
        {"o-1": [RuntimeError("saga unreachable"), first, RuntimeError("timeout"), second]}
    )
    feed = OrderFeed(fake, interval=INTERVAL)
    async with asyncio.timeout(WAIT):
        seen = [received async for received in feed.follow("o-1")]
    assert seen == [first, second]
    assert fake.calls["o-1"] == 4


@pytest.mark.parametrize("leaving", ["break", "aclose", "cancel"])
async def test_the_watch_stops_when_its_last_viewer_leaves_before_the_order_ends(
    leaving: str,
) -> None:
    fake = FakeOrders({"o-1": growing("o-1")})
    feed = OrderFeed(fake, interval=INTERVAL)
    started = asyncio.all_tasks()
    if leaving == "break":
        # As the console's stream() leaves it: the loop's async-generator hook closes it.
        async for _ in feed.follow("o-1"):
            task = watch_task(started)
            break
    elif leaving == "aclose":
        stream = feed.follow("o-1")
        await read(stream, 2)
        task = watch_task(started)
        await stream.aclose()
    else:
        reading = asyncio.create_task(read(feed.follow("o-1"), 1000))
        await eventually(lambda: fake.calls["o-1"] >= 2)
        task = watch_task(started)
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading

    await eventually(lambda: feed.watched == 0)
    await asyncio.wait([task], timeout=WAIT)
    assert task.cancelled()
    calls = fake.calls["o-1"]
    await asyncio.sleep(5 * INTERVAL)
    assert fake.calls["o-1"] == calls


async def test_close_cancels_every_watch_and_ends_every_viewers_stream() -> None:
    orders = ["o-1", "o-2", "o-3"]
    fake = FakeOrders({order_id: growing(order_id) for order_id in orders})
    feed = OrderFeed(fake, interval=INTERVAL)
    started = asyncio.all_tasks()
    streams = [feed.follow(order_id) for order_id in orders]
    for stream in streams:
        await read(stream, 1)
    tasks = watch_tasks(started)
    assert (len(tasks), feed.watched) == (3, 3)
    # Each viewer waits for its next snapshot, as an open page's stream does at shutdown.
    waiting = [asyncio.create_task(anext(stream, "ended")) for stream in streams]
    await asyncio.sleep(0)

    async with asyncio.timeout(WAIT):
        await feed.close()
        assert await asyncio.gather(*waiting) == ["ended"] * 3

    assert all(task.cancelled() for task in tasks)
    assert feed.watched == 0
    calls = dict(fake.calls)
    await asyncio.sleep(5 * INTERVAL)
    assert dict(fake.calls) == calls


async def test_an_unchanged_order_is_asked_less_often_and_a_change_restores_the_pace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    same, changed = snapshot("o-1"), snapshot("o-1", events=1)
    fake = FakeOrders({"o-1": [same] * 5 + [changed] * 5})
    feed = OrderFeed(fake, interval=INTERVAL, slowest=8 * INTERVAL, jitter=0)
    pauses = record_pauses(monkeypatch)
    async with contextlib.aclosing(feed.follow("o-1")) as stream:
        assert await read(stream, 2) == [same, changed]
        await eventually(lambda: len(pauses) >= 8)

    expected = [1, 2, 4, 8, 8, 1, 2, 4]  # doubling up to slowest; the change at the sixth ask
    assert pauses[:8] == [INTERVAL * factor for factor in expected]


async def test_watches_opened_together_do_not_keep_asking_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeOrders({f"o-{n}": [snapshot(f"o-{n}")] for n in range(20)})
    feed = OrderFeed(fake, interval=INTERVAL, slowest=INTERVAL, jitter=0.25)
    pauses = record_pauses(monkeypatch)
    streams = [feed.follow(f"o-{n}") for n in range(20)]
    for stream in streams:
        await read(stream, 1)
    await eventually(lambda: len(pauses) >= 60)
    for stream in streams:
        await stream.aclose()

    assert all(0.75 * INTERVAL <= pause <= 1.25 * INTERVAL for pause in pauses)
    assert len(set(pauses)) > len(pauses) // 2  # spread, not one shared beat


def record_pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses the watches take between asks, recorded, and not waited for."""
    pauses: list[float] = []
    sleep = asyncio.sleep

    async def recorded(seconds: float) -> None:
        task = asyncio.current_task()
        if task is not None and task.get_coro().__qualname__ == "OrderFeed._run":  # type: ignore[union-attr]
            pauses.append(seconds)
            seconds = 0
        await sleep(seconds)

    monkeypatch.setattr(asyncio, "sleep", recorded)
    return pauses


VIEWER: contextvars.ContextVar[str] = contextvars.ContextVar("viewer", default="none")


async def test_a_watch_runs_in_its_own_context_not_its_first_viewers() -> None:
    # The first viewer's request context (under tracing, its span) must not follow the watch
    # that outlives it.
    seen: list[str] = []

    async def fetch(order_id: str) -> Snapshot:
        seen.append(VIEWER.get())
        return snapshot(order_id)

    feed = OrderFeed(fetch, interval=INTERVAL)
    VIEWER.set("first request")
    async with contextlib.aclosing(feed.follow("o-1")) as stream:
        await read(stream, 1)
    assert seen and set(seen) == {"none"}
