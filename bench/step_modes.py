"""The order saga in each step mode, started straight through the Temporal client.

    python -m bench.step_modes --orders 100 --concurrency 1 --concurrency 20

Starts the stack as ``make up`` does (file-backed dev server, ``python -m worker``, the API) with
``CLOUDMART_STEP_MODE=local``, so that its one worker hosts the saga and every service and can
run either mode; each saga's input says its mode. Each row starts sagas with
``client.execute_workflow`` and waits for their result (no HTTP, no polling): what the saga
itself costs, comparable to a DBOS workflow called in process (bench/dbos_saga.py).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from temporalio.client import Client

from bench.stats import Run, table
from cloudmart.contracts.orders import (
    OrderItem,
    OrderStatus,
    PlaceOrder,
    ShippingAddress,
    StepMode,
    saga_input,
)
from cloudmart.contracts.saga import workflow_id
from cloudmart.devstack import DevStack, settings_env, throwaway_settings
from cloudmart.process import exit_now
from cloudmart.settings import Settings
from cloudmart.temporal import connect
from services.inventory.catalog import DEMO_CATALOG
from workflows.order_saga import OrderSaga

SKUS = [p.sku for p in DEMO_CATALOG if p.stock >= 100]
ADDRESS = ShippingAddress(
    name="Bench", line1="1 Main St", city="Utrecht", postal_code="3511", country="NL"
)


def saga_via_client(
    client: Client, settings: Settings, mode: StepMode
) -> Callable[[int], Awaitable[None]]:
    """One order (the n-th) in ``mode``: start the saga and wait for its COMPLETED result."""

    async def one(n: int) -> None:
        order = PlaceOrder(
            customer_id="bench",
            items=[OrderItem(sku=SKUS[n % len(SKUS)], quantity=1)],
            payment_token="tok_ok",
            shipping_address=ADDRESS,
        )
        saga = saga_input(
            str(uuid.uuid4()),
            order,
            payment_review_timeout=settings.payment_review_timeout,
            task_queues=settings.task_queues,
            stuck_policy=settings.stuck_policy,
            step_mode=mode,
        )
        state = await client.execute_workflow(
            OrderSaga.run, saga, id=workflow_id(saga.order_id), task_queue=saga.task_queues.orders
        )
        if state.status is not OrderStatus.COMPLETED:
            raise RuntimeError(f"bench order {saga.order_id} ended {state.status}")

    return one


async def drive(
    name: str, count: int, concurrency: int, one: Callable[[int], Awaitable[None]]
) -> Run:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def timed(n: int) -> None:
        async with gate:
            started = time.perf_counter()
            await one(n)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(timed(n) for n in range(count)))
    return Run(name, concurrency, latencies, time.perf_counter() - started)


async def measure(
    settings: Settings, orders: int, concurrencies: list[int], warmup: int
) -> list[Run]:
    client = await connect(settings)
    modes = {f"saga, {mode} steps": saga_via_client(client, settings, mode) for mode in StepMode}
    for one in modes.values():
        await drive("warmup", warmup, max(concurrencies), one)
    return [await drive(name, orders, c, one) for c in concurrencies for name, one in modes.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100)
    parser.add_argument(
        "--concurrency", type=int, action="append", help="repeatable; default: 1 and 20"
    )
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    concurrencies = args.concurrency or [1, 20]
    with tempfile.TemporaryDirectory(prefix="cloudmart-modes-") as data:
        settings = throwaway_settings(Path(data), step_mode=StepMode.LOCAL)
        stack = DevStack(settings, settings_env(settings), output=None, persist=True)
        try:
            stack.start()
            runs = asyncio.run(measure(stack.settings, args.orders, concurrencies, args.warmup))
        finally:
            stack.stop()
    print(
        "Order saga via the Temporal client; file-backed dev server with make up's flags; "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {platform.system()}"
    )
    rows = [
        [
            run.name,
            str(args.orders),
            str(run.concurrency),
            f"{run.throughput:.1f}",
            f"{run.p50:.1f}",
            f"{run.percentile(99):.1f}",
        ]
        for run in runs
    ]
    print(table(rows, ["row", "N", "C", "per s", "p50 ms", "p99 ms"]))


if __name__ == "__main__":
    main()
    exit_now(0)
