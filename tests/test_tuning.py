"""What the worker and the API do for their own speed (docs/performance.md has what each saved)."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
from pathlib import Path

import pytest
from sqlalchemy import Connection, event

from api import auth, deps
from services.database import READ_ONLY
from services.factory import Services
from services.loyalty.service import LoyaltyService
from services.readmodel.projector import Projector
from tests.services.test_loyalty import Orders
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


@pytest.mark.parametrize("subscriber", ["projector", "loyalty"])
def test_a_subscriber_that_has_caught_up_writes_nothing_until_events_arrive(
    services: Services, subscriber: str
) -> None:
    follower: Projector | LoyaltyService = getattr(services, subscriber)
    assert services.event_store is not None
    orders = Orders(services.event_store)
    orders.completed("c-1", 1_000)
    writes: list[bool] = []

    def on_begin(connection: Connection) -> None:
        writes.append(not connection.get_execution_options().get(READ_ONLY, False))

    event.listen(follower.engine, "begin", on_begin)
    try:
        assert follower.run_once() == 2
        assert writes.count(True) == 1
        for _ in range(3):
            assert follower.run_once() == 0
        assert writes.count(True) == 1  # caught up: reads only
        orders.completed("c-2", 1_000)
        assert follower.run_once() == 2
        assert writes.count(True) == 2
    finally:
        event.remove(follower.engine, "begin", on_begin)


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
