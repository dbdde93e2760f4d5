"""The order saga against Temporal's floors and against DBOS, in one run, with one table.

    make bench                                  # the default sizes (about 14 minutes)
    make bench BENCH_ARGS="--scale 0.3"         # fewer orders per row

Starts its own stack like ``make up`` (file-backed dev server with the same flags,
``python -m worker``, ``python -m api``) in a temporary directory. A worker for the floors runs
on the same server. The rows, at concurrency 1, 10 and 50, interleaved so that drift in the
machine's load reaches every row alike (at concurrency 1 order by order, the rows taking turns):

1. floor: a bare workflow of as many sequential no-op activities as the saga schedules (its five
   steps and its one event append), on the workflow's own task queue (eager dispatch): the
   least Temporal can do for such a workflow; beside it, the same with its activities on another
   queue, as the saga's steps go to their services' queues (the extra hops);
2. saga via client: the order saga started through the Temporal client and waited for by its
   result (real activities on the SQLite service databases, the event append, encryption);
3. saga via API: one ``POST /orders?wait=60``, which answers when the saga has ended;
4. DBOS saga: the same saga over the same service code written with DBOS Transact, in this
   process (bench/dbos_saga.py), the peer a user would weigh against ours.

Then: the saga via the client with PostgreSQL service databases beside SQLite (a second stack);
with 1, 2 and 4 worker processes at concurrency 50; the write amplification of one order; row 2
with the workflow sandbox off (``CLOUDMART_WORKFLOW_SANDBOX=false``, the worker restarted), the
floor and DBOS measured again beside it. The tables go to bench/results/saga.md (and the block
of docs/performance.md that includes it), the plot (latency against concurrency per row,
throughput against worker processes) to bench/results/saga.png.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from temporalio.client import Client

from bench.drivers import (
    One,
    drive,
    drive_alternating,
    floor,
    saga_via_api,
    saga_via_client,
    stock_bench_skus,
)
from bench.results import add_results_option, publish
from bench.stats import Run, table
from cloudmart.contracts.saga import WORKFLOW_ID_PREFIX
from cloudmart.process import exit_now
from cloudmart.settings import Settings
from cloudmart.temporal import connect
from devstack.processes import ManagedProcess
from devstack.stack import DevStack, postgres_databases, settings_env, throwaway_settings

SAGA_ACTIVITIES = 6
"""reserve, fraud screen, charge, ship, commit, and one append of the order's events."""
CONCURRENCIES = (1, 10, 50)
ORDERS = {1: 40, 10: 150, 50: 300}
"""Per row and concurrency, before ``--scale``."""
WORKER_PROCESSES = (1, 2, 4)
FLOOR_QUEUE = "bench-floor"
HOPS_QUEUE = "bench-floor-activities"
"""Where the hops floor's activities go: a queue of their own, as each service has."""
SAMPLE = 20
"""Orders whose writes are counted."""
POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
STOCK = 1_000_000
"""Per bench sku: the run's thousands of orders would empty the demo catalog's stock."""

FLOOR, CLIENT, API, DBOS = ("floor", "saga via client", "saga via API", "DBOS saga")
FLOOR_HOPS = "floor, another queue"
"""The floor beside the first: what the hops to the services' queues cost Temporal itself."""
CLIENT_UNSANDBOXED = "saga via client, no sandbox"


@dataclass
class Results:
    runs: list[Run] = field(default_factory=list)
    unsandboxed: list[Run] = field(default_factory=list)
    """The saga with the workflow sandbox off, beside the floor and DBOS measured again."""
    databases: list[Run] = field(default_factory=list)
    """Saga via client with SQLite, then PostgreSQL, service databases."""
    workers: list[Run] = field(default_factory=list)
    history_events: float = 0.0
    history_kb: float = 0.0
    rows_per_order: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, concurrency: int, sandbox: bool = True) -> Run:
        found = self.find(name, concurrency, sandbox)
        if found is None:
            raise LookupError(f"no {name!r} run at concurrency {concurrency}")
        return found

    def find(self, name: str, concurrency: int, sandbox: bool = True) -> Run | None:
        runs = self.runs if sandbox else self.unsandboxed
        return next((r for r in runs if r.name == name and r.concurrency == concurrency), None)


def orders_at(concurrency: int, scale: float) -> int:
    return max(concurrency, round(ORDERS[concurrency] * scale))


async def main_rows(stack: DevStack, scale: float) -> list[Run]:
    settings = stack.settings
    plain = await Client.connect(settings.temporal_address)  # the floor's: no codec
    client = await connect(settings)
    limits = httpx.Limits(max_connections=max(CONCURRENCIES) * 2)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=90, limits=limits) as http:
        subjects: dict[str, One] = {
            FLOOR: floor(plain, FLOOR_QUEUE, SAGA_ACTIVITIES),
            FLOOR_HOPS: floor(plain, FLOOR_QUEUE, SAGA_ACTIVITIES, HOPS_QUEUE),
            CLIENT: saga_via_client(client, settings),
            API: saga_via_api(http, poll=0.02),
        }
        return await rows_beside_dbos(subjects, scale)


async def unsandboxed_rows(stack: DevStack, scale: float) -> list[Run]:
    """The saga via the client, its worker restarted with the workflow
    sandbox off; the floor and DBOS again, so that the ratios compare moments alike."""
    stack.processes.pop("worker").stop()
    stack.env["CLOUDMART_WORKFLOW_SANDBOX"] = "false"
    stack.start_process("worker")
    settings = stack.settings
    client = await connect(settings)
    plain = await Client.connect(settings.temporal_address)
    subjects: dict[str, One] = {
        FLOOR: floor(plain, FLOOR_QUEUE, SAGA_ACTIVITIES),
        CLIENT_UNSANDBOXED: saga_via_client(client, settings),
    }
    return await rows_beside_dbos(subjects, scale)


async def rows_beside_dbos(subjects: dict[str, One], scale: float) -> list[Run]:
    """Each subject at each concurrency (at 1 taking turns order by order), then the DBOS saga."""
    # Here, not at the top: dbos is in the bench extra, and the report is tested without it.
    from bench.dbos_saga import run_dbos_saga_bench

    runs: list[Run] = []
    for one in subjects.values():
        await drive("warm-up", 20, 10, one)
    for concurrency in CONCURRENCIES:
        orders = orders_at(concurrency, scale)
        if concurrency == 1:
            runs += await drive_alternating(subjects, orders)
        else:
            for name, one in subjects.items():
                runs.append(await drive(name, orders, concurrency, one))
        peer = await run_dbos_saga_bench(orders, concurrency)
        runs.append(Run(DBOS, concurrency, peer.latencies_ms, peer.elapsed_s))
    return runs


async def saga_rows(
    settings: Settings, name: str, concurrencies: list[int], scale: float
) -> list[Run]:
    one = saga_via_client(await connect(settings), settings)
    await drive("warm-up", 20, 10, one)
    return [await drive(name, orders_at(c, scale), c, one) for c in concurrencies]


def scale_out(stack: DevStack, scale: float) -> list[Run]:
    """Saga via client at concurrency 50 with 1, 2, then 4 saga worker processes, each hosting
    the saga and every service (the read side stays in its one process, as ``make up`` runs
    it: more of it would only contend for the projection's checkpoint)."""
    concurrency = max(CONCURRENCIES)
    extra: list[ManagedProcess] = []
    runs = []
    try:
        for processes in WORKER_PROCESSES:
            while len(extra) + 1 < processes:
                worker = ManagedProcess.start(
                    f"worker-{len(extra) + 2}",
                    [sys.executable, "-m", "worker", "--service", "saga"],
                    env=stack.env,
                    output=None,
                    ready_marker="worker ready",
                )
                extra.append(worker)
                worker.wait_ready(60)
            name = f"{processes} worker process{'es' if processes > 1 else ''}"
            runs += asyncio.run(saga_rows(stack.settings, name, [concurrency], scale))
    finally:
        for worker in extra:
            worker.stop()
    return runs


async def write_amplification(settings: Settings) -> tuple[float, float, dict[str, float]]:
    """History events and KB per saga, and what each database gained per order: rows in ours,
    and KB in use in Temporal's (whose task rows come and go, so that their count says nothing;
    its pages freed meanwhile by earlier work count against it, so the history's own size is
    the steadier figure)."""
    client = await connect(settings)
    before = database_growth(settings.data_dir)
    await drive("sample", SAMPLE, 1, saga_via_client(client, settings))
    await asyncio.sleep(2)  # the projector and loyalty follow the events
    after = database_growth(settings.data_dir)
    events, size = 0, 0
    query = f"WorkflowType = 'OrderSaga' AND WorkflowId STARTS_WITH '{WORKFLOW_ID_PREFIX}'"
    handles = [
        client.get_workflow_handle(execution.id)
        async for execution in client.list_workflows(query, limit=SAMPLE)
    ]
    for handle in handles:
        history = (await handle.fetch_history()).events
        events += len(history)
        size += sum(event.ByteSize() for event in history)
    grown = {name: (after[name] - before.get(name, 0)) / SAMPLE for name in after}
    return events / len(handles), size / 1024 / len(handles), grown


def database_growth(data_dir: Path) -> dict[str, float]:
    """Rows in each of our databases; KB in use in Temporal's."""
    counts: dict[str, float] = {}
    for database in sorted(data_dir.glob("*.db")):
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
            if database.stem == "temporal":
                pages, free, size = (
                    connection.execute(f"PRAGMA {pragma}").fetchone()[0]
                    for pragma in ("page_count", "freelist_count", "page_size")
                )
                counts["temporal KB"] = (pages - free) * size / 1024
                continue
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


def start_stack(data: Path, **overrides: object) -> DevStack:
    settings = throwaway_settings(
        data,
        task_queue_prefix=f"b-{uuid.uuid4().hex[:6]}",
        seed_demo_catalog=False,
        **overrides,
    )
    stock_bench_skus(settings, STOCK)
    stack = DevStack(settings, settings_env(settings), output=None, persist=True)
    stack.start()
    return stack


def measure(scale: float, postgres_url: str) -> Results:
    results = Results()
    with tempfile.TemporaryDirectory(prefix="cloudmart-bench-") as data:
        stack = start_stack(Path(data))
        floor_worker: ManagedProcess | None = None
        try:
            floor_worker = ManagedProcess.start(
                "floor-worker",
                [
                    *(sys.executable, "-m", "bench.floor"),
                    *("--address", stack.settings.temporal_address),
                    *("--task-queue", FLOOR_QUEUE),
                    *("--task-queue", HOPS_QUEUE),
                ],
                env=stack.env,
                output=None,
                ready_marker="worker ready",
            )
            floor_worker.wait_ready(30)
            results.runs = asyncio.run(main_rows(stack, scale))
            results.workers = scale_out(stack, scale)
            results.history_events, results.history_kb, results.rows_per_order = asyncio.run(
                write_amplification(stack.settings)
            )
            results.unsandboxed = asyncio.run(unsandboxed_rows(stack, scale))  # last: a restart
        finally:
            if floor_worker is not None:
                floor_worker.stop()
            stack.stop()
    results.databases = [
        Run(f"SQLite: {r.name}", r.concurrency, r.latencies_ms, r.elapsed_s)
        for r in results.runs
        if r.name == CLIENT and r.concurrency <= 10
    ]
    with (
        tempfile.TemporaryDirectory(prefix="cloudmart-bench-pg-") as data,
        postgres_databases(postgres_url, prefix="bench") as (_, urls),
    ):
        stack = start_stack(Path(data), **urls)
        try:
            results.databases += asyncio.run(
                saga_rows(stack.settings, "PostgreSQL: saga via client", [1, 10], scale)
            )
        finally:
            stack.stop()
    return results


def runs_table(runs: list[Run], base: dict[int, Run] | None = None, base_name: str = "") -> str:
    rows = []
    for run in runs:
        row = [
            run.name,
            str(run.concurrency),
            str(len(run.latencies_ms)),
            f"{run.throughput:.1f}",
            f"{run.p50:.0f}",
            f"{run.percentile(95):.0f}",
            f"{run.percentile(99):.0f}",
        ]
        if base is not None:
            reference = base[run.concurrency]
            row += [
                f"{run.p50 / reference.p50:.2f}x",
                f"{run.throughput / reference.throughput:.2f}x",
            ]
        rows.append(row)
    headers = ["row", "C", "N", "per s", "p50 ms", "p95", "p99"]
    if base is not None:
        headers += [f"p50/{base_name}", f"per s/{base_name}"]
    return table(rows, headers)


def report(results: Results) -> str:
    floors = {r.concurrency: r for r in results.runs if r.name == FLOOR}
    dbos = {r.concurrency: r for r in results.runs if r.name == DBOS}
    ours = [r for r in results.runs if r.name != DBOS]
    peers = [r for r in results.runs if r.name in (CLIENT, DBOS)]
    one_worker = {results.workers[0].concurrency: results.workers[0]}
    amplification = ", ".join(f"{db} {rows:.1f}" for db, rows in results.rows_per_order.items())
    parts = [
        f"floor = {SAGA_ACTIVITIES} no-op activities (the saga's five steps and its event append); "
        "file-backed dev server with make up's flags",
        "",
        runs_table(ours, floors, "floor"),
        "",
        "Against DBOS Transact (same saga, same service code and SQLite databases):",
        runs_table(peers, dbos, "DBOS"),
        "",
        *unsandboxed_section(results),
        "Service databases (saga via client):",
        runs_table(results.databases),
        "",
        "Worker processes, each hosting everything (saga via client):",
        runs_table(results.workers, one_worker, "1 process"),
        "",
        "API overhead per order at p50 (saga via API - via client): "
        + ", ".join(
            f"C={c}: {results.run(API, c).p50 - results.run(CLIENT, c).p50:+.1f} ms"
            for c in CONCURRENCIES
        ),
        f"write amplification per order: {results.history_events:.0f} history events "
        f"({results.history_kb:.1f} KB); gained "
        f"per order (rows; Temporal's in KB): {amplification}",
        *engine_section(results),
    ]
    return "\n".join(parts)


def engine_section(results: Results) -> list[str]:
    """What Temporal itself takes, beside what the saga takes on top: the hops (the floor with
    its activities on another queue against the eager floor), and the saga over that floor."""
    rows = []
    for over, under in [(FLOOR_HOPS, FLOOR), (CLIENT, FLOOR_HOPS)]:
        found = [(results.find(over, c), results.find(under, c)) for c in CONCURRENCIES]
        if any(a is None or b is None for a, b in found):
            continue
        rows.append(
            [f"{over} / {under}"]
            + [f"{a.p50 / b.p50:.2f}x" for a, b in found if a is not None and b is not None]
        )
    if not rows:
        return []
    return [
        "",
        "What Temporal itself takes (p50 ratios; the floors run in the SDK's sandbox):",
        table(rows, ["p50 ratio", *(f"C={c}" for c in CONCURRENCIES)]),
    ]


def unsandboxed_section(results: Results) -> list[str]:
    if not results.unsandboxed:
        return []
    floors = {r.concurrency: r for r in results.unsandboxed if r.name == FLOOR}
    dbos = {r.concurrency: r for r in results.unsandboxed if r.name == DBOS}
    return [
        "The workflow sandbox off (CLOUDMART_WORKFLOW_SANDBOX=false; the worker restarted, the",
        "floor and DBOS measured again beside it):",
        runs_table([r for r in results.unsandboxed if r.name != DBOS], floors, "floor"),
        "",
        runs_table([r for r in results.unsandboxed if r.name != FLOOR], dbos, "DBOS"),
        "",
    ]


def plot(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt

    figure, (latency, scaling) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in (FLOOR, CLIENT, API, DBOS):
        runs = [r for r in results.runs if r.name == name]
        latency.plot([r.concurrency for r in runs], [r.p50 for r in runs], marker="o", label=name)
    for name in (FLOOR_HOPS,):
        runs = [r for r in results.runs if r.name == name]
        if runs:
            xs, ys = [r.concurrency for r in runs], [r.p50 for r in runs]
            latency.plot(xs, ys, marker=".", linestyle=":", label=name)
    for name in (CLIENT_UNSANDBOXED,):
        runs = [r for r in results.unsandboxed if r.name == name]
        if runs:
            xs, ys = [r.concurrency for r in runs], [r.p50 for r in runs]
            latency.plot(xs, ys, marker="x", linestyle="--", label=name)
    latency.set(
        xscale="log",
        yscale="log",
        xlabel="concurrency",
        ylabel="p50 latency (ms)",
        title="Latency against concurrency",
    )
    latency.set_xticks(CONCURRENCIES, [str(c) for c in CONCURRENCIES])
    latency.legend()
    latency.grid(True, which="both", alpha=0.3)
    processes = [int(r.name.split()[0]) for r in results.workers]
    scaling.bar([str(p) for p in processes], [r.throughput for r in results.workers])
    scaling.set(
        xlabel="worker processes",
        ylabel="sagas per second",
        title=f"Throughput against workers (C={max(CONCURRENCIES)})",
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--postgres-url", default=POSTGRES_ADMIN_URL, help="an admin connection")
    add_results_option(parser)
    args = parser.parse_args()
    results = measure(args.scale, args.postgres_url)
    text = report(results)
    print(text)
    print(f"written: {publish('saga', text, args.results)}")
    plot(results, args.results / "saga.png")
    print(f"plot: {args.results / 'saga.png'}")


if __name__ == "__main__":
    main()
    exit_now(0)
