"""Run CloudMart's Temporal workers.

    python worker.py                        # everything below, in this one process
    python worker.py --service saga         # the saga and every service's activities
    python worker.py --service subscribers  # the event followers: projector, loyalty, eraser
    python worker.py --service orchestrator # the saga alone, on the orders task queue
    python worker.py --service payment      # one service's activities (customers, inventory,
                                            # payment or shipping), on its own task queue
    python worker.py --service projector    # the read side's projector (follows the events)
    python worker.py --service loyalty      # the loyalty service (follows the events)
    python worker.py --service shipping-eraser  # blanks erased customers' shipping addresses
    python worker.py --service payment-returns  # one service's part in the return saga (also
                                            # shipping-, inventory- and loyalty-returns)

``shipping-eraser`` is the shipping service's own follower of the events (it writes only
shipping's database, services/shipping/erasure.py): once a customer is erased, their shipments'
addresses are blanked within its poll interval. It needs the event store and shipping's
database; ``shipping`` (the steps' activities, on their task queue) needs only shipping's.
The split stacks (``make up-split``, docker-compose.yml) run it as a process of its own.

``shipping-returns``, ``inventory-returns``, ``payment-returns`` and ``loyalty-returns`` are the
return saga's consumers (docs/returns.md): each follows the event store, reacts in its own
service's database and relays what it publishes there (its outbox) to the store. Each needs the
event store and its service's database (payment's, the provider's too).

``make up`` runs two: ``saga`` and ``subscribers``. The subscribers' work (projecting each
order's events, loyalty points, erasing addresses) is CPU in Python; in the saga's process it
held the GIL for about 18 ms per order one at a time, time a saga then waited for
(docs/performance.md).

CLOUDMART_MAX_CACHED_WORKFLOWS bounds the sagas the orchestrator keeps in memory (default 1000,
the SDK's); its ready line says the size the SDK's worker got.

SIGTERM or Ctrl-C stops polling, lets running activities finish, and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import functools
import inspect
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.customers import CustomersActivities
from activities.event_store import EventStoreActivities
from activities.inventory import InventoryActivities
from activities.payment import PaymentActivities
from activities.shipping import ShippingActivities
from cloudmart import metrics, tracing
from cloudmart.contracts.routing import TaskQueues
from cloudmart.process import exit_now
from cloudmart.settings import SERVICES, Settings, get_settings
from cloudmart.temporal import (
    PayloadKeysMissing,
    connect,
    data_converter,
    is_unreachable,
    unreachable_hint,
)
from services import lag_metrics
from services.factory import Services, open_services, prepare
from services.lag_metrics import LagGauges
from services.readmodel.queries import ReadModel
from workflows.order_saga import OrderSaga

SUBSCRIBERS = (
    "projector",
    "loyalty",
    "shipping-eraser",
    "shipping-returns",
    "inventory-returns",
    "payment-returns",
    "loyalty-returns",
)
ROLES = ("orchestrator", *SERVICES, *SUBSCRIBERS)
GROUPS = {"all": ROLES, "saga": ("orchestrator", *SERVICES), "subscribers": SUBSCRIBERS}
"""Roles that run together under one name (``--service``)."""
READY = "worker ready"
"""Printed once every worker polls; the dev stack waits for this line."""
UNSANDBOXED = UnsandboxedWorkflowRunner()
"""The runner of a saga worker with the workflow sandbox off (settings: ``workflow_sandbox``)."""

log = logging.getLogger("cloudmart.worker")


@asynccontextmanager
async def running_workers(
    client: Client,
    queues: TaskQueues,
    *,
    orchestrator: bool,
    services: Services,
    activity_threads: int,
    eager_activities: bool = True,
    max_cached_workflows: int = 1000,
    sandboxed: bool = True,
) -> AsyncIterator[list[Worker]]:
    """Run the saga's workflow worker and/or the hosted services' activity workers.

    Service activities are synchronous (database calls), so each service gets its own thread
    pool; its size is also the service's activity concurrency and database pool size.
    ``eager_activities`` lets Temporal hand an activity on the saga's own queue (the event
    appends) straight back to this worker; only the time-skipping test server needs it off.
    ``max_cached_workflows`` (the SDK's default: 1000) bounds the sagas kept in memory; an evicted
    one is rebuilt by replaying its history when it next has work.

    ``sandboxed`` False runs the saga outside the SDK's workflow sandbox (settings:
    ``workflow_sandbox``).
    """
    if orchestrator and services.event_store is None:
        raise ValueError("the orchestrator hosts the event store: the saga appends to it")
    if orchestrator:
        write_workflow_bytecode()
    service_activities = {
        "customers": (queues.customers, services.customers, CustomersActivities),
        "inventory": (queues.inventory, services.inventory, InventoryActivities),
        "payment": (queues.payment, services.payment, PaymentActivities),
        "shipping": (queues.shipping, services.shipping, ShippingActivities),
    }
    # The saga, with the event store's append as an activity on its own task queue.
    saga_activities = (
        EventStoreActivities(services.event_store).all() if services.event_store else []
    )
    hosted: list[tuple[str, list[object], list[type]]] = []
    if orchestrator:
        hosted.append((queues.orders, saga_activities, [OrderSaga]))
    for queue, service, activities_of in service_activities.values():
        if service is not None:
            hosted.append((queue, activities_of(service).all(), []))  # type: ignore[arg-type]
    executors: list[ThreadPoolExecutor] = []
    workers: list[Worker] = []
    for task_queue, activities, workflows in hosted:
        executor = ThreadPoolExecutor(activity_threads, thread_name_prefix=task_queue)
        executors.append(executor)
        workers.append(
            Worker(
                client,
                task_queue=task_queue,
                workflows=workflows,
                activities=activities,  # type: ignore[arg-type]
                activity_executor=executor,
                max_concurrent_activities=activity_threads,
                graceful_shutdown_timeout=timedelta(seconds=10),
                disable_eager_activity_execution=not eager_activities,
                max_cached_workflows=max_cached_workflows,
                **({} if sandboxed or not workflows else {"workflow_runner": UNSANDBOXED}),
            )
        )
    try:
        async with AsyncExitStack() as stack:
            for worker in workers:
                await stack.enter_async_context(worker)
            yield workers
    finally:
        for executor in executors:
            executor.shutdown(wait=True)


WORKFLOW_MODULES = Path(inspect.getfile(OrderSaga)).parent


def write_workflow_bytecode(directory: Path = WORKFLOW_MODULES) -> None:
    """Bytecode for the workflow modules, which the sandbox imports afresh for every saga it
    starts (or replays into its cache): from source, each import compiles them, 11-15 ms of the
    event loop per saga (docs/performance.md). PYTHONDONTWRITEBYTECODE, which our image and
    many environments set, keeps imports from writing it, so it is written here once, for these
    modules only. A read-only directory stays as it is (the image compiles at build time)."""
    if sys.dont_write_bytecode:
        compileall.compile_dir(directory, quiet=2)


IDLE = 0.05
"""How long a subscriber waits before looking again once it has caught up with the store."""
BATCH = 500
"""The most events a subscriber handles in one transaction. A batch shorter than this means it
has caught up: looking again at once would find a few events at most (or none) for the price
of a transaction on each database, which under load was about half the subscribers' CPU, CPU
that the sagas' worker shares (docs/performance.md)."""
CATALOG_SYNC = 10.0
"""How often the projector looks for products added to inventory's catalog."""


@asynccontextmanager
async def running_subscribers(
    services: Services, stop: asyncio.Event, meter: MetricMeter | None = None
) -> AsyncIterator[None]:
    """Follow the event store: the projector, loyalty, shipping's address eraser and/or the
    return saga's consumers, each in its own loop."""
    loops: list[tuple[str, Callable[[], int], float]] = []
    if services.projector is not None:
        projector = services.projector

        def sync_catalog() -> int:
            projector.sync_catalog()
            return 0  # nothing to hurry for: look again after the pause

        loops.append(("projector", functools.partial(projector.run_once, BATCH), IDLE))
        loops.append(("catalog sync", sync_catalog, CATALOG_SYNC))
    if services.loyalty is not None:
        loops.append(("loyalty", functools.partial(services.loyalty.run_once, BATCH), IDLE))
    if services.shipping_eraser is not None:
        eraser = functools.partial(services.shipping_eraser.run_once, BATCH)
        loops.append(("shipping eraser", eraser, IDLE))
    for consumer in services.consumers:  # the return saga's (docs/returns.md)
        loops.append((consumer.name, functools.partial(consumer.run_once, BATCH), IDLE))
    if loops and meter is not None:
        followers = {"projector": services.projector, "loyalty": services.loyalty}
        followers |= {consumer.name: consumer for consumer in services.consumers}
        read = ReadModel(services.projector.engine) if services.projector is not None else None
        hosted = {name: f for name, f in followers.items() if f is not None}
        loops.append(("metrics", LagGauges(meter, hosted, read).measure, lag_metrics.EVERY))
    tasks = [asyncio.create_task(_follow(*loop, stop)) for loop in loops]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def _follow(name: str, step: Callable[[], int], pause: float, stop: asyncio.Event) -> None:
    """Call ``step`` (in a thread) until stopped; pause unless it found a full batch to do; on an
    error (say its database is down), log it and try again a second later."""
    while not stop.is_set():
        try:
            done = await asyncio.to_thread(step)
        except Exception:
            log.exception("%s failed; retrying in 1 s", name)
            done, delay = 0, 1.0
        else:
            delay = 0 if done >= BATCH else pause
        if delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)


async def serve(
    settings: Settings,
    roles: Iterable[str],
    ready_file: Path | None = None,
) -> None:
    roles = set(roles)
    hosted = roles & {*SERVICES, *SUBSCRIBERS} | (
        {"event_store"} if "orchestrator" in roles else set()
    )
    services = open_services(settings, hosted)
    try:
        for service in services.hosted():
            prepare(service, settings)
        client = await connect(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with (
            running_workers(
                client,
                settings.task_queues,
                orchestrator="orchestrator" in roles,
                services=services,
                activity_threads=settings.activity_threads,
                max_cached_workflows=settings.max_cached_workflows,
                sandboxed=settings.workflow_sandbox,
            ) as workers,
            running_subscribers(services, stop, metrics.meter(settings)),
        ):
            queues = ", ".join(w.task_queue for w in workers) or "no task queue"
            said = _saga_worker(workers)
            print(f"{READY}: {', '.join(sorted(roles))} on {queues}{said}", flush=True)
            if ready_file is not None:
                await asyncio.to_thread(ready_file.write_text, queues)
            await stop.wait()
            log.info("Shutting down: finishing running activities")
            if ready_file is not None:
                await asyncio.to_thread(ready_file.unlink, missing_ok=True)
    finally:
        services.dispose()


def _saga_worker(workers: Iterable[Worker]) -> str:
    """The saga cache's size, and the sandbox if it is off, as the SDK's worker has them (not as
    the settings ask): what an operator sizing memory needs to see, and what the tests check
    arrived."""
    sagas = [w.config() for w in workers if w.config().get("workflows")]
    said = [f"; caches up to {size} sagas" for size in {c["max_cached_workflows"] for c in sagas}]
    if any(isinstance(c.get("workflow_runner"), UnsandboxedWorkflowRunner) for c in sagas):
        said.append("; workflow sandbox off")
    return "".join(said)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ready-file",
        type=Path,
        help="create this file once polling (for container healthchecks); removed on exit",
    )
    parser.add_argument(
        "--service",
        choices=(*GROUPS, *ROLES),
        default="all",
        help="run one service's worker, or a group of them (default: all in this process)",
    )
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.addFilter(tracing.TraceIds())  # a line written within a span ends with its trace id
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s%(trace)s",
        handlers=[handler],
    )
    tracing.setup("cloudmart-worker" if args.service == "all" else f"cloudmart-{args.service}")
    settings = get_settings()
    roles = GROUPS.get(args.service, (args.service,))
    status = 0
    try:
        data_converter(settings)  # no keys: refuse before touching any database
        asyncio.run(serve(settings, roles, ready_file=args.ready_file))
    except PayloadKeysMissing as err:
        print(f"worker: {err}", file=sys.stderr)
        status = 1
    except Exception as err:
        if is_unreachable(err):
            print(
                f"worker: cannot reach Temporal at {settings.temporal_address} "
                f"({unreachable_hint(settings)}): {err}",
                file=sys.stderr,
            )
        else:
            log.exception("worker stopped on an error")
        status = 1
    exit_now(status)


if __name__ == "__main__":
    main()
