"""Run CloudMart's Temporal workers.

    python worker.py                        # the saga and every service's activities
    python worker.py --service orchestrator # the saga alone, on the orders task queue
    python worker.py --service payment      # one service's activities, on its own task queue

SIGTERM or Ctrl-C stops polling, lets running activities finish, and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from activities.inventory import InventoryActivities
from activities.payment import PaymentActivities
from activities.shipping import ShippingActivities
from cloudmart.contracts.routing import TaskQueues
from cloudmart.process import exit_now
from cloudmart.settings import SERVICES, Settings, get_settings
from cloudmart.temporal import connect, is_unreachable
from services.factory import Services, open_services, prepare
from workflows.order_saga import OrderSaga

ROLES = ("orchestrator", *SERVICES)
READY = "worker ready"
"""Printed once every worker polls; the dev stack waits for this line."""

log = logging.getLogger("cloudmart.worker")


@asynccontextmanager
async def running_workers(
    client: Client,
    queues: TaskQueues,
    *,
    orchestrator: bool,
    services: Services,
    activity_threads: int,
) -> AsyncIterator[list[Worker]]:
    """Run the saga's workflow worker and/or the hosted services' activity workers.

    Service activities are synchronous (database calls), so each service gets its own thread
    pool; its size is also the service's activity concurrency and database pool size.
    """
    executors: list[ThreadPoolExecutor] = []
    workers: list[Worker] = []
    if orchestrator:
        workers.append(Worker(client, task_queue=queues.orders, workflows=[OrderSaga]))
    hosted = (
        (queues.inventory, services.inventory and InventoryActivities(services.inventory).all()),
        (queues.payment, services.payment and PaymentActivities(services.payment).all()),
        (queues.shipping, services.shipping and ShippingActivities(services.shipping).all()),
    )
    for task_queue, activities in hosted:
        if not activities:
            continue
        executor = ThreadPoolExecutor(activity_threads, thread_name_prefix=task_queue)
        executors.append(executor)
        workers.append(
            Worker(
                client,
                task_queue=task_queue,
                activities=activities,
                activity_executor=executor,
                max_concurrent_activities=activity_threads,
                graceful_shutdown_timeout=timedelta(seconds=10),
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


async def serve(settings: Settings, roles: Iterable[str], ready_file: Path | None = None) -> None:
    roles = set(roles)
    services = open_services(settings, roles & set(SERVICES))
    try:
        for service in services.hosted():
            prepare(service, settings)
        client = await connect(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with running_workers(
            client,
            settings.task_queues,
            orchestrator="orchestrator" in roles,
            services=services,
            activity_threads=settings.activity_threads,
        ) as workers:
            queues = ", ".join(w.task_queue for w in workers)
            print(f"{READY}: {', '.join(sorted(roles))} on {queues}", flush=True)
            if ready_file is not None:
                await asyncio.to_thread(ready_file.write_text, queues)
            await stop.wait()
            log.info("Shutting down: finishing running activities")
            if ready_file is not None:
                await asyncio.to_thread(ready_file.unlink, missing_ok=True)
    finally:
        services.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ready-file",
        type=Path,
        help="create this file once polling (for container healthchecks); removed on exit",
    )
    parser.add_argument(
        "--service",
        choices=("all", *ROLES),
        default="all",
        help="run one service's worker (default: all of them in this process)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = get_settings()
    roles = ROLES if args.service == "all" else (args.service,)
    status = 0
    try:
        asyncio.run(serve(settings, roles, ready_file=args.ready_file))
    except Exception as err:
        if is_unreachable(err):
            print(
                f"worker: cannot reach Temporal at {settings.temporal_address} "
                f"(is the dev server running? `make up` starts it): {err}",
                file=sys.stderr,
            )
        else:
            log.exception("worker stopped on an error")
        status = 1
    exit_now(status)


if __name__ == "__main__":
    main()
