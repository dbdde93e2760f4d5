"""Memory and idle sagas: what orders waiting for a payment review cost the worker and the server.

    make bench-idle                                              # 10,000 sagas (~50 minutes)
    make bench-idle BENCH_ARGS="--orders 300 --small-cache 30 --resumes 10"   # a quick look

Starts its own stack exactly as ``make up`` does (file-backed dev server with the same flags,
``python -m worker`` hosting every role, ``python -m api``; headless, on free ports, in a
temporary directory), seeds enough stock for every order, then:

1. Loads ``--orders`` sagas paid with ``tok_review``: each reserves its stock, passes the fraud
   screen, has its charge held by the provider, and waits (the payment review deadline is 24 h,
   longer than the study). At most ``--window`` sagas are between their start and the wait at
   any time, counted through the ``OrderStatus`` search attribute: starting them all at once
   would queue every saga's next task behind every other's, evicting each from the cache between
   its steps, and measure that flood instead of the idle sagas it leaves.
2. Measures the worker's resident memory (``VmRSS`` in ``/proc/<pid>/status``, once its CPU has
   gone quiet) before and after the load, with the default cache: the "live" row. Then, for the
   default cache again, ``--small-cache`` and ``--large-cache``, restarts the worker with
   ``CLOUDMART_MAX_CACHED_WORKFLOWS`` set to it (its ready line must report that size) and
   fills the empty cache by querying every waiting saga, oldest first: a query to a saga the
   worker does not hold replays its history and leaves it in the cache, least recently used
   out first. (Verified while building this: a second query to a saga just replayed by a query
   answers in ~12 ms, one to a saga pushed out since takes the ~40 ms replay again; and the
   default cache's live and refilled rows show about the same memory.) Memory per cached saga is the
   slope between the half-full and the full cache, so that what a worker loads once (the
   sandboxed saga module, database pools) is not charged to the sagas.
3. Resumes ``--resumes`` random sagas that the cache holds and as many that it evicted, one at a
   time: the time from the approval (the ``review_payment`` Update, as ``POST
   /orders/{id}/payment-review`` sends it) to the saga's result, ``COMPLETED`` (capture, ship,
   commit and the event appends included). Which sagas the cache holds follows from the order
   they were last touched in: exactly after the queries (no batch of them straddles the
   boundary); give or take ``--window`` either side of it after the load (the live row).
4. Sizes every database before and after the load: the dev server's SQLite file with its WAL
   (on disk, and in pages in use, which a checkpoint does not move) and each service's.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from contextlib import closing
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client

from bench.drivers import new_saga, stock_bench_skus
from bench.results import add_results_option, publish
from bench.stats import table
from cloudmart.contracts.orders import OrderStatus, PaymentReviewDecision
from cloudmart.contracts.saga import ORDER_STATUS, WORKFLOW_TYPE, workflow_id
from cloudmart.process import exit_now
from cloudmart.settings import Settings
from cloudmart.temporal import connect
from devstack.stack import DevStack, settings_env, throwaway_settings
from workflows.order_saga import OrderSaga

DEFAULT_CACHE: int = Settings.model_fields["max_cached_workflows"].default
REVIEW_TOKEN = "tok_review"
REVIEW_TIMEOUT = timedelta(hours=24)
"""Longer than any study: a saga whose review timed out would fail and leave the cache."""
STOCK = 1_000_000
"""Per sku: a waiting saga holds its reservation, so the demo catalog's stock would run out."""
POLL = 0.25
"""Seconds between two counts of the waiting sagas while loading."""
STALL = 120.0
"""Loading gives up when no saga has reached the wait for this long."""
QUIET_CPU = 0.10
"""A worker using less than this share of a core is done with what it was given: the
projector's and loyalty's polling of the event store stays below it."""
QUIET_WINDOW = 0.5
QUIET_LIMIT = 300.0
SAMPLE = 5
"""Waiting sagas whose history is measured."""
MB = 1024 * 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
"""Units of /proc/<pid>/stat's CPU times (the study reads /proc: Linux only)."""


@dataclass
class Row:
    setting: str
    cache: int
    waiting: int
    cached: int
    rss_idle: float
    rss_cached: float
    rss_touched: float | None
    """After every waiting saga went through a cache smaller than them (None: it held them)."""
    kb_per_saga: float | None
    fill_seconds: float | None
    """Querying every waiting saga into the restarted worker: one replay each."""
    resume_cached: list[float]
    resume_evicted: list[float]


@dataclass
class Load:
    orders: int
    seconds: float
    history_events: int
    history_bytes: int
    server_rss: tuple[float, float]
    databases: dict[str, tuple[tuple[int, int], tuple[int, int]]]
    """Per database: (on disk, in pages in use) in bytes, before and after the load."""


# --- the worker process, from the outside ----------------------------------------------------


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    # After the command name (which may hold spaces), utime and stime are the 12th and 13th.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def quiet(pid: int) -> None:
    """Wait until the process has finished what it was given (the appends trailing a saga's
    wait, the projector catching up), so that memory and file sizes are read at rest."""
    deadline = time.monotonic() + QUIET_LIMIT
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        await asyncio.sleep(QUIET_WINDOW)
        if cpu_seconds(pid) - before < QUIET_CPU * QUIET_WINDOW:
            return
    raise RuntimeError(f"process {pid} still busy after {QUIET_LIMIT:.0f} s")


def worker_pid(stack: DevStack) -> int:
    return stack.processes["worker"].popen.pid


async def restart_worker(stack: DevStack, cache: int) -> None:
    """The stack's worker again, with another cache size: an empty cache, a new sticky queue."""
    old = stack.processes.pop("worker")
    status = await asyncio.to_thread(old.stop)
    if status != 0:
        print(f"note: the worker exited {status} on SIGTERM", file=sys.stderr)
    stack.env["CLOUDMART_MAX_CACHED_WORKFLOWS"] = str(cache)
    await asyncio.to_thread(stack.start_process, "worker")
    ready = [line for line in stack.processes["worker"].tail if "worker ready" in line]
    if not ready or f"caches up to {cache} sagas" not in ready[-1]:
        raise RuntimeError(f"the worker did not report a cache of {cache}: {ready}")


# --- the sagas -------------------------------------------------------------------------------


def waiting_query(settings: Settings) -> str:
    return (
        f"WorkflowType = '{WORKFLOW_TYPE}' AND TaskQueue = '{settings.task_queues.orders}' "
        f"AND {ORDER_STATUS.name} = '{OrderStatus.AWAITING_PAYMENT_REVIEW.value}'"
    )


async def load(client: Client, settings: Settings, count: int, window: int) -> list[str]:
    """Start ``count`` review sagas, at most ``window`` of them on their way to the wait at a
    time; returns their workflow ids in start order once every one of them waits."""
    ids: list[str] = []
    waiting, progress_at = 0, time.monotonic()
    while waiting < count:
        room = min(count - len(ids), window - (len(ids) - waiting))
        if room > 0:
            sagas = [new_saga(settings, len(ids) + k, REVIEW_TOKEN) for k in range(room)]
            await asyncio.gather(
                *(
                    client.start_workflow(
                        OrderSaga.run,
                        saga,
                        id=workflow_id(saga.order_id),
                        task_queue=saga.task_queues.orders,
                    )
                    for saga in sagas
                )
            )
            ids += [workflow_id(saga.order_id) for saga in sagas]
        await asyncio.sleep(POLL)
        counted = (await client.count_workflows(waiting_query(settings))).count
        if counted > waiting:
            waiting, progress_at = counted, time.monotonic()
        elif time.monotonic() - progress_at > STALL:
            raise RuntimeError(
                f"{waiting} of {len(ids)} started sagas wait for review, none more in {STALL:.0f}"
                " s: see the worker's output (a saga failed, or the worker is stuck)"
            )
    return ids


async def touch(client: Client, ids: list[str], batch: int) -> None:
    """Query every saga, ``batch`` at a time, a batch after the other, oldest first."""
    for start in range(0, len(ids), batch):
        await asyncio.gather(
            *(client.get_workflow_handle(i).query(OrderSaga.state) for i in ids[start:][:batch])
        )


async def resume(client: Client, ids: list[str]) -> list[float]:
    """Approve each saga's payment, one at a time: ms from the approval to its result."""
    latencies = []
    for saga_id in ids:
        handle = client.get_workflow_handle_for(OrderSaga.run, saga_id)
        started = time.perf_counter()
        await handle.execute_update(OrderSaga.review_payment, PaymentReviewDecision(approved=True))
        state = await handle.result()
        latencies.append((time.perf_counter() - started) * 1000)
        if state.status is not OrderStatus.COMPLETED:
            raise RuntimeError(f"{saga_id} ended {state.status} after its approval")
    return latencies


def in_cache(ids: list[str], cache: int, margin: int = 0) -> tuple[list[str], list[str]]:
    """(held, evicted) of ``ids``, in the order last touched, by a least-recently-used cache of
    ``cache``, leaving out ``margin`` either side of the boundary where that order is unsure."""
    boundary = len(ids) - cache
    if boundary <= 0:
        return ids, []
    return ids[boundary + margin :], ids[: max(0, boundary - margin)]


async def history(client: Client, ids: list[str]) -> tuple[int, int]:
    """Median events and bytes in a waiting saga's history: what replaying one reads."""
    events, sizes = [], []
    for saga_id in ids:
        fetched = await client.get_workflow_handle(saga_id).fetch_history()
        events.append(len(fetched.events))
        sizes.append(sum(event.ByteSize() for event in fetched.events))
    return round(statistics.median(events)), round(statistics.median(sizes))


# --- the study -------------------------------------------------------------------------------


@dataclass
class Options:
    orders: int
    window: int
    caches: list[int]
    resumes: int
    batch: int
    seed: int


async def measure_row(
    client: Client,
    pid: int,
    setting: str,
    cache: int,
    waiting: list[str],
    opts: Options,
    rng: random.Random,
) -> Row:
    """Fill a restarted worker's empty cache by queries, then resume sagas it holds and not.
    Every waiting saga is queried, oldest first, as a worker that has run a while has seen
    them all: its memory is read with the cache half full, full, and after all of them."""
    if not waiting:
        raise RuntimeError("no saga is left waiting: ask for fewer --resumes or more --orders")
    await quiet(pid)
    idle = rss_mb(pid)
    cached = min(cache, len(waiting))
    half, boundary = cached // 2, len(waiting) - cached
    # No batch straddles the half-full or full cache, where memory is read, nor the boundary
    # between the sagas it ends up holding and those it evicted: across it the order is certain.
    cuts = sorted({0, half, cached, boundary, len(waiting)})
    rss, filling = {}, 0.0
    for start, end in itertools.pairwise(cuts):
        began = time.perf_counter()
        await touch(client, waiting[start:end], opts.batch)
        filling += time.perf_counter() - began
        if end in (half, cached):
            await quiet(pid)
            rss[end] = rss_mb(pid)
    await quiet(pid)
    touched = rss_mb(pid) if boundary else None
    per_saga = (rss[cached] - rss[half]) * 1024 / (cached - half) if half else None
    held, evicted = in_cache(waiting, cache)
    return Row(
        setting,
        cache,
        len(waiting),
        cached,
        idle,
        rss[cached],
        touched,
        per_saga,
        filling,
        *await resume_both(client, held, evicted, waiting, opts.resumes, rng),
    )


async def resume_both(
    client: Client,
    held: list[str],
    evicted: list[str],
    waiting: list[str],
    count: int,
    rng: random.Random,
) -> tuple[list[float], list[float]]:
    """Sagas the cache holds first: a resumed evicted saga would push the oldest held one out.
    The resumed sagas leave ``waiting``."""
    picked_held = rng.sample(held, min(count, len(held)))
    picked_evicted = rng.sample(evicted, min(count, len(evicted)))
    latencies = await resume(client, picked_held), await resume(client, picked_evicted)
    done = {*picked_held, *picked_evicted}
    waiting[:] = [saga_id for saga_id in waiting if saga_id not in done]
    return latencies


async def study(stack: DevStack, opts: Options) -> tuple[Load, list[Row]]:
    settings = stack.settings
    client = await connect(settings)
    rng = random.Random(opts.seed)
    pid, server = worker_pid(stack), stack.processes["temporal"].popen.pid
    await quiet(pid)
    idle, server_before = rss_mb(pid), rss_mb(server)
    before = database_sizes(settings.data_dir)
    started = time.perf_counter()
    ids = await load(client, settings, opts.orders, opts.window)
    seconds = time.perf_counter() - started
    await quiet(pid)
    loaded, server_after = rss_mb(pid), rss_mb(server)
    after = database_sizes(settings.data_dir)
    events, size = await history(client, rng.sample(ids, min(SAMPLE, len(ids))))
    waiting = list(ids)
    held, evicted = in_cache(waiting, DEFAULT_CACHE, opts.window)
    live = Row(
        f"{DEFAULT_CACHE} (default), live",
        DEFAULT_CACHE,
        len(waiting),
        min(DEFAULT_CACHE, len(waiting)),
        idle,
        loaded,
        None,
        None,
        None,
        *await resume_both(client, held, evicted, waiting, opts.resumes, rng),
    )
    rows = [live]
    for cache in opts.caches:
        await restart_worker(stack, cache)
        name = f"{cache} (default)" if cache == DEFAULT_CACHE else str(cache)
        rows.append(await measure_row(client, worker_pid(stack), name, cache, waiting, opts, rng))
    databases = {name: (before.get(name, (0, 0)), sizes) for name, sizes in after.items()}
    return Load(opts.orders, seconds, events, size, (server_before, server_after), databases), rows


def database_sizes(data_dir: Path) -> dict[str, tuple[int, int]]:
    """Per SQLite database: bytes on disk (with its WAL) and bytes in pages in use."""
    sizes = {}
    for path in sorted(data_dir.glob("*.db")):
        wal = path.with_name(f"{path.name}-wal")
        disk = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        # Read-only, beside the writers (WAL): page counts include what the WAL holds.
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
            pages = connection.execute("PRAGMA page_count").fetchone()[0]
            free = connection.execute("PRAGMA freelist_count").fetchone()[0]
            page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        sizes[path.stem] = (disk, (pages - free) * page_size)
    return sizes


# --- the report ------------------------------------------------------------------------------


def percentiles(latencies: list[float]) -> str:
    if not latencies:
        return "—"
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered):.0f} / {p95:.0f} (n={len(ordered)})"


def report(load: Load, rows: list[Row]) -> str:
    lines = [
        f"{load.orders} sagas waiting for a payment review, loaded in {load.seconds:.1f} s "
        f"({load.orders / load.seconds:.1f} per s); a waiting saga's history: "
        f"{load.history_events} events, {load.history_bytes / 1024:.1f} KB",
        "",
        "worker (python -m worker, every role in one process):",
        table(
            [
                [
                    row.setting,
                    str(row.waiting),
                    str(row.cached),
                    f"{row.rss_idle:.0f}",
                    f"{row.rss_cached:.0f}",
                    "—" if row.rss_touched is None else f"{row.rss_touched:.0f}",
                    "—" if row.kb_per_saga is None else f"{row.kb_per_saga:.0f}",
                    "—" if row.fill_seconds is None else f"{row.fill_seconds:.1f}",
                    percentiles(row.resume_cached),
                    percentiles(row.resume_evicted),
                ]
                for row in rows
            ],
            [
                "cache",
                "waiting",
                "cached",
                "RSS idle MB",
                "RSS cached MB",
                "RSS all touched MB",
                "KB per cached saga",
                "fill s",
                "resume cached p50/p95 ms",
                "resume evicted p50/p95 ms",
            ],
        ),
        "",
        f"Temporal dev server RSS: {load.server_rss[0]:.0f} MB before the load, "
        f"{load.server_rss[1]:.0f} MB after",
        "",
        "databases (SQLite; on disk = file + WAL; in use = pages in use):",
        table(
            [
                [
                    name,
                    f"{disk_before / MB:.2f}",
                    f"{disk / MB:.2f}",
                    f"{used / MB:.2f}",
                    f"{(disk - disk_before) / load.orders:,.0f}",
                    f"{(used - used_before) / load.orders:,.0f}",
                ]
                for name, ((disk_before, used_before), (disk, used)) in load.databases.items()
            ],
            [
                "database",
                "on disk before MB",
                "on disk after MB",
                "in use after MB",
                "on disk per saga B",
                "in use per saga B",
            ],
        ),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument(
        "--window", type=int, default=100, help="sagas on their way to the wait at a time"
    )
    parser.add_argument("--small-cache", type=int, default=100)
    parser.add_argument(
        "--large-cache",
        type=int,
        help="default: --orders, a cache that holds every saga; 0 leaves this row out",
    )
    parser.add_argument(
        "--resumes", type=int, default=50, help="cached and as many evicted sagas, per row"
    )
    parser.add_argument("--batch", type=int, default=20, help="queries in flight to fill a cache")
    parser.add_argument("--seed", type=int, default=7)
    add_results_option(parser)
    args = parser.parse_args()
    large = args.orders if args.large_cache is None else args.large_cache
    caches = [DEFAULT_CACHE, args.small_cache, *([large] if large else [])]
    if args.orders < 1 or args.window < 1 or args.batch < 1 or min(caches) < 1:
        parser.error("--orders, --window, --batch and the caches must be at least 1")
    opts = Options(args.orders, args.window, caches, args.resumes, args.batch, args.seed)

    with tempfile.TemporaryDirectory(prefix="cloudmart-idle-") as data:
        settings = throwaway_settings(
            Path(data),
            task_queue_prefix=f"idle-{uuid.uuid4().hex[:6]}",
            payment_review_timeout=REVIEW_TIMEOUT,
            max_cached_workflows=DEFAULT_CACHE,
            seed_demo_catalog=False,
        )
        stock_bench_skus(settings, STOCK)
        stack = DevStack(settings, settings_env(settings), output=None, persist=True)
        began = time.monotonic()
        try:
            stack.start()
            load_, rows = asyncio.run(study(stack, opts))
        finally:
            stack.stop()
    text = "\n".join(
        [
            "file-backed dev server with make up's flags",
            report(load_, rows),
            f"\nthe whole run took {(time.monotonic() - began) / 60:.1f} minutes",
        ]
    )
    print(text)
    print(f"written: {publish('idle_sagas', text, args.results)}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the stack was stopped on the way out
        exit_now(130)
    except Exception:
        traceback.print_exc()
        exit_now(1)
    exit_now(0)
