"""`python -m worker --service <group>`: the roles that run together in one process, and the
two processes `make up` runs (the saga with every service's steps; the read side apart, so
that its Python never holds the GIL a saga waits for)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from devstack.stack import DevStack, throwaway_settings
from tests.support import worker_process


@pytest.mark.parametrize(
    ("group", "roles", "queues"),
    [
        (
            "saga",
            "customers, inventory, orchestrator, payment, shipping",
            "orders, customers, inventory, payment, shipping",
        ),
        (
            "subscribers",
            "inventory-returns, loyalty, loyalty-returns, payment-returns, projector, "
            "shipping-eraser, shipping-returns",
            "no task queue",
        ),
        (
            "all",
            "customers, inventory, inventory-returns, loyalty, loyalty-returns, orchestrator, "
            "payment, payment-returns, projector, shipping, shipping-eraser, shipping-returns",
            "orders, ",
        ),
    ],
)
def test_a_group_runs_its_roles_and_no_others(
    dev_stack: DevStack, tmp_path: Path, group: str, roles: str, queues: str
) -> None:
    prefix = f"group-{uuid.uuid4().hex[:6]}"  # its own queues: not the shared stack's sagas
    settings = throwaway_settings(
        tmp_path, temporal_address=dev_stack.settings.temporal_address, task_queue_prefix=prefix
    )
    with worker_process(settings, "--service", group) as worker:
        [ready] = [line for line in worker.tail if "worker ready" in line]
    hosted, _, polled = ready.split("worker ready: ")[1].partition(" on ")
    assert hosted == roles
    named = polled.split(";")[0].replace(f"{prefix}-", "")
    assert named.startswith(queues), ready


def test_make_up_runs_the_read_side_in_a_process_of_its_own(dev_stack: DevStack) -> None:
    commands = {name: process.popen.args[1:] for name, process in dev_stack.processes.items()}
    assert commands["worker"] == ["-m", "worker", "--service", "saga"]
    assert commands["worker-subscribers"] == ["-m", "worker", "--service", "subscribers"]
    assert sorted(dev_stack.processes) == ["api", "temporal", "worker", "worker-subscribers"]
