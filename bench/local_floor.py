"""The least Temporal takes for a workflow of N no-op local activities: the local step mode's floor.

    python -m bench.local_floor [--runs 40]

Starts ``temporal server start-dev`` with ``make up``'s flags, file-backed, and one unsandboxed
worker in this process (the client's), and runs workflows of 0, 1 and 6 sequential no-op local
activities (6: the saga's five steps and its one append in the local step mode, saga v6) one at
a time, each size twice, interleaved. A saga in the local step mode costs this plus its steps'
own work plus its own workflow code; the DBOS saga (bench/dbos_saga.py) costs its steps' work
plus its checkpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from bench.floor import LocalFloor, noop_in_thread
from bench.stats import table
from cloudmart.devstack import free_port, temporal_server_command
from cloudmart.process import exit_now

QUEUE = "local-floor"
SIZES = (0, 1, 6)


async def connect(address: str) -> Client:
    for _ in range(100):
        try:
            return await Client.connect(address)
        except RuntimeError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"no Temporal server at {address}")


async def measure(address: str, runs: int) -> dict[int, list[float]]:
    client = await connect(address)
    taken: dict[int, list[float]] = {size: [] for size in SIZES}
    with ThreadPoolExecutor(4) as threads:
        async with Worker(
            client,
            task_queue=QUEUE,
            workflows=[LocalFloor],
            activities=[noop_in_thread],
            activity_executor=threads,
            workflow_runner=UnsandboxedWorkflowRunner(),  # the least it can cost
        ):
            for size in SIZES:  # warm-up
                for _ in range(5):
                    await client.execute_workflow(
                        LocalFloor.run, size, id=f"warm-{uuid.uuid4()}", task_queue=QUEUE
                    )
            for _ in range(2):
                for size in SIZES:
                    for _ in range(runs // 2):
                        began = time.perf_counter()
                        await client.execute_workflow(
                            LocalFloor.run, size, id=f"floor-{uuid.uuid4()}", task_queue=QUEUE
                        )
                        taken[size].append((time.perf_counter() - began) * 1000)
    return taken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cloudmart-local-floor-") as data:
        port = free_port()
        command = temporal_server_command(port=port, ui_port=None, db_file=Path(data) / "t.db")
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            taken = asyncio.run(measure(f"127.0.0.1:{port}", args.runs))
        finally:
            server.terminate()
            server.wait(30)
    rows = []
    for size, samples in taken.items():
        ranked = sorted(samples)
        p95 = ranked[int(0.95 * (len(ranked) - 1))]
        rows.append(
            [str(size), str(len(samples)), f"{statistics.median(samples):.1f}", f"{p95:.1f}"]
        )
    print("workflows of N no-op local activities, one at a time; file-backed dev server with")
    print("make up's flags; the worker unsandboxed, in the client's process")
    print(table(rows, ["N", "runs", "p50 ms", "p95 ms"]))


if __name__ == "__main__":
    main()
    exit_now(0)
