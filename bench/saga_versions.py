"""The newest saga version against the one before it, in one run, on one stack.

    make bench-versions                      # python -m bench.saga_versions [--orders 60]

Starts the stack as ``make bench`` does (file-backed dev server with ``make up``'s flags, SQLite
service databases), plus a second saga worker on task queues of its own that runs today's code
with the newest patch refused (bench/older_saga_worker.py): the previous version. Both share the
server and the service databases. In each step mode, orders go to the two versions in turns:
one at a time, order by order, then ``--orders`` at concurrency 10 for each, twice, alternating,
so that a drift in this shared machine's speed reaches both alike. Prints p50/p95 latency,
throughput, and the history events of one completed order of each.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from temporalio.client import Client

from bench.drivers import One, drive, drive_alternating, saga_via_client
from bench.saga_vs_floor import start_stack
from bench.stats import Run, table
from cloudmart.contracts.orders import StepMode
from cloudmart.contracts.saga import WORKFLOW_ID_PREFIX
from cloudmart.devstack import DevStack, ManagedProcess, settings_env
from cloudmart.process import exit_now
from cloudmart.settings import Settings
from cloudmart.temporal import connect
from workflows.order_saga import SAGA_V8

NEWEST, PREVIOUS = "v8", "v7"
REFUSED = (SAGA_V8,)
"""The patch that makes the newest version: refused, the saga is the previous one."""
CONCURRENCY = 10


def start_previous(stack: DevStack, settings: Settings) -> ManagedProcess:
    worker = ManagedProcess.start(
        "worker-previous",
        [sys.executable, "-m", "bench.older_saga_worker", *REFUSED],
        env={**stack.env, **settings_env(settings, stack.env)},
        output=None,
        ready_marker="worker ready",
    )
    worker.wait_ready(60)
    return worker


async def history_events(client: Client, one: One, settings: Settings) -> int:
    """The history length of the next completed order ``one`` places."""
    before = {
        w.id
        async for w in client.list_workflows(
            f"TaskQueue = '{settings.task_queues.orders}' AND ExecutionStatus = 'Completed'"
        )
    }
    await one(0)
    for _ in range(50):  # visibility follows within moments
        async for listed in client.list_workflows(
            f"TaskQueue = '{settings.task_queues.orders}' AND ExecutionStatus = 'Completed'"
        ):
            if listed.id not in before and listed.id.startswith(WORKFLOW_ID_PREFIX):
                history = await client.get_workflow_handle(listed.id).fetch_history()
                return len(history.events)
        await asyncio.sleep(0.1)
    raise RuntimeError("the sample order never showed as completed")


async def compare(
    newest: Settings, previous: Settings, orders: int
) -> tuple[list[Run], dict[str, int]]:
    client = await connect(newest)
    runs: list[Run] = []
    events: dict[str, int] = {}
    for mode in (StepMode.REGULAR, StepMode.LOCAL):
        subjects = {
            f"{NEWEST} {mode}": saga_via_client(client, newest, mode),
            f"{PREVIOUS} {mode}": saga_via_client(client, previous, mode),
        }
        for one in subjects.values():
            await drive("warm-up", 20, CONCURRENCY, one)
        for name, one in subjects.items():
            events[name] = await history_events(
                client, one, newest if name.startswith(NEWEST) else previous
            )
        runs += await drive_alternating(subjects, orders)
        by_name: dict[str, list[Run]] = {name: [] for name in subjects}
        for _ in range(2):
            for name, one in subjects.items():
                by_name[name].append(await drive(name, orders, CONCURRENCY, one))
        for name, halves in by_name.items():
            runs.append(
                Run(
                    name,
                    CONCURRENCY,
                    [ms for run in halves for ms in run.latencies_ms],
                    sum(run.elapsed_s for run in halves),
                )
            )
    return runs, events


def report(runs: list[Run], events: dict[str, int]) -> str:
    rows = [
        [
            run.name,
            str(run.concurrency),
            str(len(run.latencies_ms)),
            f"{run.p50:.1f}",
            f"{run.percentile(95):.1f}",
            f"{run.throughput:.1f}",
            str(events.get(run.name, "")),
        ]
        for run in sorted(runs, key=lambda r: (r.name.split()[1], r.concurrency, r.name))
    ]
    headers = ["saga", "C", "orders", "p50 ms", "p95 ms", "sagas/s", "history events"]
    return "\n".join(
        [
            f"saga {NEWEST} against {PREVIOUS} (today's code with {', '.join(REFUSED)} refused),",
            "one stack, the two taking turns; file-backed dev server, SQLite service databases",
            table(rows, headers),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=60, help="per version, mode and turn")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cloudmart-versions-") as data:
        stack = start_stack(Path(data))
        previous_worker: ManagedProcess | None = None
        try:
            newest = stack.settings
            previous = newest.model_copy(
                update={"task_queue_prefix": f"{newest.task_queue_prefix}-prev"}
            )
            previous_worker = start_previous(stack, previous)
            runs, events = asyncio.run(compare(newest, previous, args.orders))
        finally:
            if previous_worker is not None:
                previous_worker.stop()
            stack.stop()
    print(report(runs, events))


if __name__ == "__main__":
    main()
    exit_now(0)
