"""Saga throughput against the number of worker processes, on the dev server, in one run.

    python -m bench.scale_out [--orders 300] [--concurrency 20]

Starts a stack like ``make up`` (file-backed dev server, SQLite service databases) and drives
sagas straight through the Temporal client (no API, no polling) with 1, 2 and 4 worker
processes that each host everything, then with the split topology (one process per service).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from pathlib import Path

from bench.drivers import SKUS, drive
from bench.stats import Run, table
from cloudmart.contracts.orders import OrderItem, PlaceOrder, ShippingAddress, saga_input
from cloudmart.contracts.saga import workflow_id
from cloudmart.devstack import DevStack, ManagedProcess, settings_env, throwaway_settings
from cloudmart.process import exit_now
from cloudmart.settings import Settings
from cloudmart.temporal import connect
from workflows.order_saga import OrderSaga


async def sagas(settings: Settings, orders: int, concurrency: int, name: str) -> Run:
    client = await connect(settings)
    address = ShippingAddress(
        name="Bench", line1="1 Main St", city="Utrecht", postal_code="3511", country="NL"
    )

    async def one(n: int) -> None:
        order = PlaceOrder(
            customer_id="bench",
            items=[OrderItem(sku=SKUS[n % len(SKUS)], quantity=1)],
            payment_token="tok_ok",
            shipping_address=address,
        )
        saga = saga_input(
            str(uuid.uuid4()),
            order,
            payment_review_timeout=settings.payment_review_timeout,
            task_queues=settings.task_queues,
        )
        await client.execute_workflow(
            OrderSaga.run, saga, id=workflow_id(saga.order_id), task_queue=saga.task_queues.orders
        )

    await drive("warmup", 20, concurrency, one)
    return await drive(name, orders, concurrency, one)


def run_with(data: Path, workers: int, split: bool, orders: int, concurrency: int) -> Run:
    settings = throwaway_settings(data, task_queue_prefix=f"scale-{uuid.uuid4().hex[:6]}")
    env = settings_env(settings)
    stack = DevStack(settings, env, output=None, split=split)
    extra: list[ManagedProcess] = []
    try:
        stack.start()
        for n in range(workers - 1):
            process = ManagedProcess.start(
                f"worker-{n + 2}",
                [sys.executable, "-m", "worker"],
                env=env,
                output=None,
                ready_marker="worker ready",
            )
            process.wait_ready(60)
            extra.append(process)
        name = "split: 1 per service" if split else f"{workers} x all services"
        return asyncio.run(sagas(settings, orders, concurrency, name))
    finally:
        for process in extra:
            process.stop()
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    runs = []
    for workers, split in ((1, False), (2, False), (4, False), (1, True)):
        with tempfile.TemporaryDirectory(prefix="cloudmart-scale-") as data:
            runs.append(run_with(Path(data), workers, split, args.orders, args.concurrency))
    base = runs[0].throughput
    rows = [
        [
            run.name,
            str(args.orders),
            str(run.concurrency),
            f"{run.throughput:.1f}",
            f"{run.p50:.0f}",
            f"{run.percentile(99):.0f}",
            f"{run.throughput / base:.2f}x",
        ]
        for run in runs
    ]
    print(table(rows, ["worker processes", "N", "C", "sagas/s", "p50 ms", "p99 ms", "vs 1"]))


if __name__ == "__main__":
    main()
    exit_now(0)
