"""The saga against Temporal's floor, at concurrency 1, 10 and 50, in one run on one server.

    make bench                              # the default sizes (about 3 minutes)
    make bench BENCH_ARGS="--scale 0.5"     # fewer orders per row

Starts its own stack exactly as ``make up`` does (file-backed dev server with the same flags,
``python -m worker``, ``python -m api``) in a temporary directory, and a worker for the floor
workflow on the same server. Rows, all measured in this run, at each concurrency:

1. floor: a bare workflow of as many sequential no-op activities as the saga has steps, on the
   workflow's own task queue (eager dispatch: the least Temporal can do for such a workflow);
2. saga via client: the order saga started through the Temporal client, waited for by its
   result (real activities on the SQLite service databases, the event appends, encryption);
3. saga via API: ``POST /orders``, then one ``GET /orders/{id}?wait=60``, a long-poll that
   answers when the saga ends (asked again 20 ms later only if it had not, or on a 503).

Then the write amplification of one order: the events in its Temporal history, and the rows
each database gained per order (Temporal's own included).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sqlite3
import sys
import tempfile
import uuid
from pathlib import Path

import httpx
from temporalio.client import Client

from bench.drivers import One, drive, floor, saga_via_api, saga_via_client
from bench.stats import Run, table
from cloudmart.contracts.saga import WORKFLOW_ID_PREFIX
from cloudmart.devstack import DevStack, ManagedProcess, settings_env, throwaway_settings
from cloudmart.process import exit_now
from cloudmart.temporal import connect

SAGA_STEPS = 5
"""reserve, fraud screen, charge, ship, commit."""
CONCURRENCIES = (1, 10, 50)
ORDERS = {1: 40, 10: 150, 50: 300}
"""Per row and concurrency, before ``--scale``."""
API_POLL = 0.02
FLOOR_QUEUE = "bench-floor"
SAMPLE = 20
"""Orders whose writes are counted."""


async def measure(stack: DevStack, scale: float) -> list[Run]:
    settings = stack.settings
    plain = await Client.connect(settings.temporal_address)  # the floor's: no codec
    client = await connect(settings)
    limits = httpx.Limits(max_connections=max(CONCURRENCIES) * 2)
    runs: list[Run] = []
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30, limits=limits) as http:
        subjects: dict[str, One] = {
            "floor": floor(plain, FLOOR_QUEUE, SAGA_STEPS),
            "saga via client": saga_via_client(client, settings),
            "saga via API": saga_via_api(http, API_POLL),
        }
        for one in subjects.values():
            await drive("warm-up", 20, 10, one)
        for concurrency in CONCURRENCIES:
            orders = max(concurrency, round(ORDERS[concurrency] * scale))
            for name, one in subjects.items():
                runs.append(await drive(name, orders, concurrency, one))
    return runs


async def write_amplification(stack: DevStack) -> tuple[float, dict[str, float]]:
    """History events per saga, and rows gained per order by each database."""
    settings = stack.settings
    client = await connect(settings)
    before = row_counts(settings.data_dir)
    await drive("sample", SAMPLE, 1, saga_via_client(client, settings))
    await asyncio.sleep(2)  # the projector and loyalty follow the events
    after = row_counts(settings.data_dir)
    events = 0
    query = f"WorkflowType = 'OrderSaga' AND WorkflowId STARTS_WITH '{WORKFLOW_ID_PREFIX}'"
    handles = [
        client.get_workflow_handle(execution.id)
        async for execution in client.list_workflows(query, limit=SAMPLE)
    ]
    for handle in handles:
        events += len((await handle.fetch_history()).events)
    rows = {name: (after[name] - before.get(name, 0)) / SAMPLE for name in after}
    return events / len(handles), rows


def row_counts(data_dir: Path) -> dict[str, int]:
    counts = {}
    for database in sorted(data_dir.glob("*.db")):
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
            tables = [
                name
                for (name,) in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            ]
            counts[database.stem] = sum(
                connection.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
                for name in tables
            )
    return counts


def report(runs: list[Run]) -> str:
    floors = {run.concurrency: run for run in runs if run.name == "floor"}
    rows = []
    for run in runs:
        base = floors[run.concurrency]
        rows.append(
            [
                run.name,
                str(run.concurrency),
                str(len(run.latencies_ms)),
                f"{run.throughput:.1f}",
                f"{run.p50:.0f}",
                f"{run.percentile(95):.0f}",
                f"{run.percentile(99):.0f}",
                f"{run.p50 / base.p50:.2f}x",
                f"{run.throughput / base.throughput:.2f}x",
            ]
        )
    headers = ["row", "C", "N", "per s", "p50 ms", "p95", "p99", "p50/floor", "per s/floor"]
    return table(rows, headers)


def api_overhead(runs: list[Run]) -> str:
    by = {(run.name, run.concurrency): run for run in runs}
    return ", ".join(
        f"C={c}: {by['saga via API', c].p50 - by['saga via client', c].p50:+.0f} ms"
        for c in CONCURRENCIES
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cloudmart-bench-") as data:
        settings = throwaway_settings(Path(data), task_queue_prefix=f"b-{uuid.uuid4().hex[:6]}")
        env = settings_env(settings)
        stack = DevStack(settings, env, output=None, persist=True)
        floor_worker: ManagedProcess | None = None
        try:
            stack.start()
            floor_worker = ManagedProcess.start(
                "floor-worker",
                [
                    *(sys.executable, "-m", "bench.floor"),
                    *("--address", settings.temporal_address),
                    *("--task-queue", FLOOR_QUEUE),
                ],
                env=env,
                output=None,
                ready_marker="worker ready",
            )
            floor_worker.wait_ready(30)
            runs = asyncio.run(measure(stack, args.scale))
            events, rows = asyncio.run(write_amplification(stack))
        finally:
            if floor_worker is not None:
                floor_worker.stop()
            stack.stop()
    print(
        f"floor = {SAGA_STEPS} no-op activities (the saga's steps); file-backed dev server with "
        f"make up's flags; {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {platform.system()}"
    )
    print(report(runs))
    print(f"API overhead per order at p50 (saga via API - via client): {api_overhead(runs)}")
    print(f"write amplification per order: {events:.0f} history events; rows gained per order: ")
    print("  " + ", ".join(f"{name} {count:.1f}" for name, count in rows.items()))


if __name__ == "__main__":
    main()
    exit_now(0)
