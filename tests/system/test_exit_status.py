"""Exit statuses stay what the program chose, despite temporalio/sdk-python#300.

Every process that uses a Temporal client or worker ends through ``cloudmart.process.exit_now``;
these tests repeat each kind of process and check every run's status.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.stack import DevStack, throwaway_settings
from tests.support import api_process, migrate, worker_process

ROOT = Path(__file__).parents[2]
RUNS = 4
"""Runs of each kind of process: ending without exit_now, a client script aborted in about two
runs of five here (docs/testing.md), so four runs catch it about nine times in ten."""


def test_a_client_script_exits_0_every_time() -> None:
    statuses = [
        subprocess.run(
            [sys.executable, "-m", "tests.system.exit_probe.client_probe"],
            cwd=ROOT,
            capture_output=True,
        ).returncode
        for _ in range(RUNS)
    ]
    assert statuses == [0] * RUNS


@pytest.mark.parametrize(
    ("fail", "expected", "workers"),
    # Also as `make test` runs it: in xdist worker processes, each of which ends with exit_now.
    [(False, 0, None), (True, 1, None), (False, 0, "2")],
)
def test_pytest_keeps_its_exit_status(fail: bool, expected: int, workers: str | None) -> None:
    env = {**os.environ, "PROBE_FAIL": "1" if fail else "0"}
    runs = RUNS // 2 if not fail and not workers else 1
    statuses = [
        subprocess.run(
            [
                *(sys.executable, "-m", "pytest", "tests/system/exit_probe/probe_saga.py"),
                *("-q", "-p", "no:cacheprovider"),
                *(("-n", workers) if workers else ()),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
        ).returncode
        for _ in range(runs)
    ]
    assert statuses == [expected] * runs


@pytest.mark.parametrize("role", ["all", "payment"])
def test_the_worker_exits_0_on_sigterm_every_time(
    dev_stack: DevStack, tmp_path: Path, role: str
) -> None:
    # Its own task queues: it must not take the shared stack's work while being stopped.
    settings = throwaway_settings(
        tmp_path,
        temporal_address=dev_stack.settings.temporal_address,
        task_queue_prefix=f"exit-{role}",
    )
    for _ in range(RUNS // 2):
        with worker_process(settings, "--service", role):  # stops it with SIGTERM: must be 0
            pass


def test_the_api_exits_0_on_sigterm_every_time(dev_stack: DevStack, tmp_path: Path) -> None:
    for _ in range(RUNS // 2):
        settings = throwaway_settings(
            tmp_path, temporal_address=dev_stack.settings.temporal_address
        )
        migrate(settings)  # as a worker would have: /healthz checks the schemas are there
        with api_process(settings) as api:  # stops it with SIGTERM, checks the status is 0
            assert api.get("/healthz").status_code == 200
