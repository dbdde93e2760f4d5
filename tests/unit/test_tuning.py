"""What the worker and the API do for their own speed (docs/performance.md has what each saved)."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import itertools
import time
from pathlib import Path
from typing import Literal

import pytest

from api import auth, deps
from worker import BATCH, WORKFLOW_MODULES, _follow, write_workflow_bytecode


def test_workflow_bytecode_is_written_even_where_imports_may_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "saga.py"
    module.write_text("STEPS = 5\n")
    monkeypatch.setattr("sys.dont_write_bytecode", True)
    write_workflow_bytecode(tmp_path)
    assert Path(importlib.util.cache_from_source(str(module))).is_file()


def test_the_workflow_modules_are_the_sagas() -> None:
    assert (WORKFLOW_MODULES / "order_saga.py").is_file()


class Transcript(asyncio.Event):
    """A follower's stop event that writes down what the follower does: each look (a call of
    its step) and each pause, which either ran out or was ended by the stop."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[str] = []

    async def wait(self) -> Literal[True]:
        try:
            await super().wait()
        except asyncio.CancelledError:  # the follower's timeout: the pause ran its length
            self.entries.append("paused")
            raise
        self.entries.append("stopped")
        return True


async def _follows(found: int, looks: int, pause: float) -> tuple[list[str], list[float]]:
    """What the follower does when every look finds ``found`` to do, until it is stopped in
    its ``looks``-th look; and the time between one look's end and the next one's start."""
    loop = asyncio.get_running_loop()
    stop = Transcript()
    times: list[tuple[float, float]] = []

    def step() -> int:
        started = time.monotonic()
        stop.entries.append("look")
        if stop.entries.count("look") == looks:
            loop.call_soon_threadsafe(stop.set)  # before the follower hears back from this look
        times.append((started, time.monotonic()))
        return found

    try:
        await asyncio.wait_for(_follow("test", step, pause, stop), timeout=10)
    except TimeoutError:
        raise AssertionError(f"not stopped after {looks} looks in 10 s: {stop.entries}") from None
    return stop.entries, [nxt[0] - prev[1] for prev, nxt in itertools.pairwise(times)]


async def test_a_subscriber_looks_again_at_once_only_after_a_full_batch() -> None:
    # More are waiting: no pause between looks.
    transcript, _ = await _follows(BATCH, looks=10, pause=0.2)
    assert transcript == ["look"] * 10
    # Caught up: a pause before each look, which runs its full length (the follower's timer
    # starts after the look has ended: the time between looks is never shorter).
    transcript, gaps = await _follows(BATCH - 1, looks=3, pause=0.2)
    assert transcript == ["look", "paused", "look", "paused", "look", "stopped"]
    assert min(gaps) >= 0.2 - 1e-6, gaps  # (less the clock's resolution, 1 ns)


def test_the_apis_dependencies_run_on_its_event_loop_not_in_its_thread_pool() -> None:
    dependencies = [deps.get_state, deps.get_sagas, deps.get_read]
    dependencies += [auth.get_caller, auth.require_operator, auth.require_operator_when_auth]
    assert all(inspect.iscoroutinefunction(dependency) for dependency in dependencies)
