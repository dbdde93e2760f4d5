"""What one activity step costs on the dev server, setting by setting.

    python -m bench.floor_steps [--runs 30]

For each server configuration below, in memory and file-backed (``--db-filename``), it starts
``temporal server start-dev`` with exactly those flags, runs the floor workflow (N sequential
no-op activities, eager dispatch, one worker in this process) back to back at concurrency 1
for N = 1 and N = 8, and prints the p50 of each and the cost per step, (p50(8) - p50(1)) / 7.

The evidence column comes from the histories themselves: the mean wait between a task being
scheduled and being started (``*TaskScheduled`` to ``*TaskStarted``), for workflow tasks and
for activity tasks, over every workflow of the N = 8 run. A rate-limited queue reader shows up
there as tens of milliseconds per task.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from bench.floor import Floor, noop
from bench.stats import table
from cloudmart.devstack import SERVER_TUNING, free_port, temporal_server_command
from cloudmart.process import exit_now

TRANSFER = ("--dynamic-config-value", "history.transferProcessorMaxPollRPS=1000")
WAL = ("--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal")
ONE_PARTITION = (
    *("--dynamic-config-value", "matching.numTaskqueueReadPartitions=1"),
    *("--dynamic-config-value", "matching.numTaskqueueWritePartitions=1"),
)
OTHER_READERS = tuple(
    flag
    for reader in ("timer", "visibility", "outbound")
    for flag in ("--dynamic-config-value", f"history.{reader}ProcessorMaxPollRPS=1000")
)

CONFIGURATIONS: dict[str, tuple[str, ...]] = {
    "server defaults": (),
    "transfer reader 1000/s": TRANSFER,
    "make up's flags (transfer + WAL)": tuple(SERVER_TUNING),
    "+ timer/visibility/outbound readers 1000/s": (*SERVER_TUNING, *OTHER_READERS),
    "+ one task queue partition": (*SERVER_TUNING, *ONE_PARTITION),
}
"""WAL only matters file-backed; in memory it is the same as the row above it."""


@dataclass
class Result:
    configuration: str
    storage: str
    p50_1: float
    p50_8: float
    workflow_task_wait: float
    activity_task_wait: float

    @property
    def per_step(self) -> float:
        return (self.p50_8 - self.p50_1) / 7


async def dispatch_waits(client: Client, workflow_ids: list[str]) -> tuple[float, float]:
    """Mean scheduled-to-started wait (ms) of workflow tasks and of activity tasks."""
    waits: dict[str, list[float]] = {"workflow": [], "activity": []}
    for workflow_id in workflow_ids:
        scheduled: dict[int, float] = {}
        async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
            at = event.event_time.ToDatetime().timestamp() * 1000
            match event.event_type:
                case (
                    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED
                    | EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                ):
                    scheduled[event.event_id] = at
                case EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                    started = event.workflow_task_started_event_attributes
                    waits["workflow"].append(at - scheduled[started.scheduled_event_id])
                case EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                    started_activity = event.activity_task_started_event_attributes
                    waits["activity"].append(at - scheduled[started_activity.scheduled_event_id])
    return statistics.mean(waits["workflow"]), statistics.mean(waits["activity"])


async def measure(address: str, runs: int) -> tuple[float, float, float, float]:
    client = await Client.connect(address)
    queue = f"floor-steps-{uuid.uuid4().hex[:6]}"
    async with Worker(client, task_queue=queue, workflows=[Floor], activities=[noop]):

        async def one(steps: int) -> tuple[float, str]:
            workflow_id = f"floor-{uuid.uuid4()}"
            started = time.perf_counter()
            await client.execute_workflow(
                Floor.run, args=[steps, None], id=workflow_id, task_queue=queue
            )
            return (time.perf_counter() - started) * 1000, workflow_id

        for _ in range(10):  # warm up: connections, caches, the server's own
            await one(8)
        p50: dict[int, float] = {}
        ids: list[str] = []
        for steps in (1, 8):
            timed = [await one(steps) for _ in range(runs)]
            p50[steps] = statistics.median(ms for ms, _ in timed)
            if steps == 8:
                ids = [workflow_id for _, workflow_id in timed]
        workflow_wait, activity_wait = await dispatch_waits(client, ids)
    return p50[1], p50[8], workflow_wait, activity_wait


def run_configuration(name: str, flags: Sequence[str], file_backed: bool, runs: int) -> Result:
    with tempfile.TemporaryDirectory(prefix="floor-steps-") as data:
        port = free_port()
        command = temporal_server_command(
            port=port,
            ui_port=None,
            db_file=Path(data) / "temporal.db" if file_backed else None,
            tuning=flags,
        )
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            address = f"127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    measured = asyncio.run(measure(address, runs))
                    break
                except RuntimeError:  # not listening yet
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.3)
        finally:
            server.terminate()
            server.wait(20)
    return Result(name, "file" if file_backed else "memory", *measured)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    results = [
        run_configuration(name, flags, file_backed, args.runs)
        for file_backed in (False, True)
        for name, flags in CONFIGURATIONS.items()
        if file_backed or flags != tuple(SERVER_TUNING)  # WAL is a file-backed setting
    ]
    print(
        f"floor workflow, concurrency 1, {args.runs} runs per N after 10 warm-up; "
        f"{platform.python_implementation()} {platform.python_version()}"
    )
    rows = [
        [
            r.storage,
            r.configuration,
            f"{r.p50_1:.1f}",
            f"{r.p50_8:.1f}",
            f"{r.per_step:.1f}",
            f"{r.workflow_task_wait:.1f}",
            f"{r.activity_task_wait:.1f}",
        ]
        for r in results
    ]
    headers = ["storage", "server flags", "N=1 ms", "N=8 ms", "per step", "WFT wait", "AT wait"]
    print(table(rows, headers))


if __name__ == "__main__":
    main()
    exit_now(0)
