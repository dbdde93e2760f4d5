"""Orders through the API against the dev stack, side by side with Temporal's floor.

    make bench                                    # 200 orders at concurrency 10
    make bench BENCH_ARGS="--orders 500 --concurrency 20"

Starts its own stack exactly as ``make up`` does (file-backed dev server with the same flags,
``python -m worker``, ``python -m api``) in a temporary directory, and a worker for the floor
workflow on the same server. Rows, all measured in this run:

- floor, eager: a bare workflow of 4 sequential no-op activities on the workflow's own task
  queue, so Temporal can hand each activity straight back to the worker (eager dispatch);
- floor, routed: the same, with the activities on another task queue, as the saga routes its
  steps to each service's queue (no eager dispatch possible);
- saga via API: ``POST /orders`` then ``GET /orders/{id}`` every 10 ms until terminal; the
  saga's 4 steps are real activities on three SQLite databases.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from temporalio.client import Client

from bench.floor import Floor
from bench.stats import Run, table
from cloudmart.devstack import DevStack, ManagedProcess, settings_env, throwaway_settings
from cloudmart.process import exit_now
from services.inventory.catalog import DEMO_CATALOG

STEPS = 4
FLOOR_QUEUE = "bench-floor"
FLOOR_ACTIVITY_QUEUE = "bench-floor-activities"
SKUS = [p.sku for p in DEMO_CATALOG if p.stock >= 100]


async def drive(
    name: str, orders: int, concurrency: int, one: Callable[[int], Awaitable[None]]
) -> Run:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def timed(n: int) -> None:
        async with gate:
            started = time.perf_counter()
            await one(n)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(timed(n) for n in range(orders)))
    return Run(name, concurrency, latencies, time.perf_counter() - started)


def floor(client: Client, activity_queue: str | None) -> Callable[[int], Awaitable[None]]:
    async def one(_: int) -> None:
        await client.execute_workflow(
            Floor.run,
            args=[STEPS, activity_queue],
            id=f"floor-{uuid.uuid4()}",
            task_queue=FLOOR_QUEUE,
        )

    return one


def saga_via_api(http: httpx.AsyncClient) -> Callable[[int], Awaitable[None]]:
    async def one(n: int) -> None:
        body = {
            "customer_id": "bench",
            "items": [{"sku": SKUS[n % len(SKUS)], "quantity": 1}],
            "payment_token": "tok_ok",
            "shipping_address": {
                "name": "Bench",
                "line1": "1 Main St",
                "city": "Utrecht",
                "postal_code": "3511",
                "country": "NL",
            },
        }
        response = await http.post("/orders", json=body)
        response.raise_for_status()
        order_id = response.json()["order_id"]
        while True:
            state = (await http.get(f"/orders/{order_id}")).json()
            if state["status"] == "COMPLETED":
                return
            if state["status"] in ("FAILED", "CANCELLED"):
                raise RuntimeError(f"bench order {order_id} ended {state['status']}")
            await asyncio.sleep(0.01)

    return one


async def measure(stack: DevStack, orders: int, concurrency: int, warmup: int) -> list[Run]:
    client = await Client.connect(stack.settings.temporal_address)
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30, limits=limits) as http:
        subjects = {
            "floor, eager": floor(client, None),
            "floor, routed": floor(client, FLOOR_ACTIVITY_QUEUE),
            "saga via API": saga_via_api(http),
        }
        for one in subjects.values():
            await drive("warmup", warmup, concurrency, one)
        return [await drive(name, orders, concurrency, one) for name, one in subjects.items()]


def report(runs: list[Run], orders: int) -> str:
    base = runs[0]
    rows = [
        [
            run.name,
            str(orders),
            str(run.concurrency),
            f"{run.throughput:.1f}",
            f"{run.p50:.0f}",
            f"{run.percentile(99):.0f}",
            f"{run.p50 / base.p50:.2f}x",
        ]
        for run in runs
    ]
    headers = ["row", "N", "C", "per s", "p50 ms", "p99 ms", "p50 vs floor"]
    return table(rows, headers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cloudmart-bench-") as data:
        settings = throwaway_settings(Path(data))
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
                    *("--task-queue", FLOOR_QUEUE, "--task-queue", FLOOR_ACTIVITY_QUEUE),
                ],
                env=env,
                output=None,
                ready_marker="worker ready",
            )
            floor_worker.wait_ready(30)
            runs = asyncio.run(measure(stack, args.orders, args.concurrency, args.warmup))
        finally:
            if floor_worker is not None:
                floor_worker.stop()
            stack.stop()
    print(
        f"{STEPS} activities per workflow; file-backed dev server with make up's flags; "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {platform.system()}"
    )
    print(report(runs, args.orders))


if __name__ == "__main__":
    main()
    exit_now(0)
