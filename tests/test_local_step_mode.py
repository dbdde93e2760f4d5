"""Local step mode as `make up` would run it (CLOUDMART_STEP_MODE=local): `python -m worker`
runs the steps in its own process; a split topology is refused before anything starts."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from cloudmart.contracts.saga import workflow_id
from cloudmart.devstack import DevStack, StackError, settings_env, throwaway_settings
from cloudmart.temporal import connect
from tests.api.test_api import TERMINAL, order_body
from tests.workflows.test_local_steps import activities_in_history


def test_an_orchestrator_only_worker_is_refused_in_local_step_mode(tmp_path: Path) -> None:
    settings = throwaway_settings(tmp_path, step_mode="local")
    refused = subprocess.run(
        [sys.executable, "-m", "worker", "--service", "orchestrator"],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2, refused.stderr
    assert "CLOUDMART_STEP_MODE=local" in refused.stderr
    assert "inventory, payment, shipping" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_the_split_stack_is_refused_in_local_step_mode_before_anything_starts(
    tmp_path: Path,
) -> None:
    settings = throwaway_settings(tmp_path, step_mode="local")
    stack = DevStack(settings, settings_env(settings), output=None, split=True)
    with pytest.raises(StackError, match="CLOUDMART_STEP_MODE=local"):
        stack.start()
    assert stack.processes == {}


def test_the_stack_in_local_step_mode_completes_orders_with_local_activities(
    tmp_path: Path,
) -> None:
    settings = throwaway_settings(
        tmp_path, step_mode="local", task_queue_prefix=f"local-{uuid.uuid4().hex[:6]}"
    )
    stack = DevStack(settings, settings_env(settings), output=None, persist=False)
    stack.start()
    try:
        with httpx.Client(base_url=stack.api_url, timeout=30) as api:
            placed = [
                api.post("/orders", json=order_body(country=country)).json()["order_id"]
                for country in ("DE", "JP")
            ]
            deadline = time.monotonic() + 60
            while True:
                states = [api.get(f"/orders/{order_id}").json() for order_id in placed]
                if all(s["status"] in TERMINAL for s in states):
                    break
                assert time.monotonic() < deadline, [s["status"] for s in states]
                time.sleep(0.2)

        async def histories() -> list[tuple[list[str], list[str]]]:
            client = await connect(settings)
            return [
                await activities_in_history(client.get_workflow_handle(workflow_id(order_id)))
                for order_id in placed
            ]

        seen = asyncio.run(histories())
    finally:
        stopped = stack.stop()
    assert set(stopped.values()) == {0}, stopped
    assert [s["status"] for s in states] == ["COMPLETED", "FAILED"]
    for scheduled, markers in seen:
        assert scheduled == []  # saga v6: the appends are local activities too
        assert "inventory.reserve" in markers and "orders.append" in markers
    assert "payment.refund" in seen[1][1]
