"""What the worker and the API do for their own speed (docs/performance.md has what each saved)."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
from pathlib import Path

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


async def _calls_in(seconds: float, found: int) -> int:
    calls = 0

    def step() -> int:
        nonlocal calls
        calls += 1
        return found

    stop = asyncio.Event()
    following = asyncio.create_task(_follow("test", step, 0.2, stop))
    await asyncio.sleep(seconds)
    stop.set()
    await following
    return calls


async def test_a_subscriber_looks_again_at_once_only_after_a_full_batch() -> None:
    assert await _calls_in(0.5, BATCH) >= 10  # more are waiting
    assert await _calls_in(0.5, BATCH - 1) <= 4  # caught up: every 0.2 s


def test_the_apis_dependencies_run_on_its_event_loop_not_in_its_thread_pool() -> None:
    dependencies = [deps.get_state, deps.get_sagas, deps.get_read]
    dependencies += [auth.get_caller, auth.require_operator, auth.require_operator_when_auth]
    assert all(inspect.iscoroutinefunction(dependency) for dependency in dependencies)
