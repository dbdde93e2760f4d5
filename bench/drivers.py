"""What the benchmarks drive, one workflow or order at a time: the floor, the saga through the
Temporal client, the saga through the API; and ``drive``, which runs one of them N times at a
given concurrency and times each."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx
from temporalio.client import Client

from bench.floor import Floor
from bench.stats import Run
from cloudmart.contracts.orders import (
    OrderItem,
    OrderSagaInput,
    OrderStatus,
    PlaceOrder,
    ShippingAddress,
)
from cloudmart.contracts.saga import start_search_attributes, workflow_id
from cloudmart.settings import Settings
from services.factory import build_inventory, prepare
from services.inventory.catalog import DEMO_CATALOG
from workflows.order_saga import OrderSaga

One = Callable[[int], Awaitable[None]]

LONG_POLL = 60
"""Seconds a ``GET /orders/{id}?wait=`` may wait: the API's longest."""

SKUS = [p.sku for p in DEMO_CATALOG if p.stock >= 100]
ADDRESS = ShippingAddress(
    name="Bench", line1="1 Main St", city="Utrecht", postal_code="3511", country="NL"
)


def stock_bench_skus(settings: Settings, stock: int) -> None:
    """Give every bench sku ``stock`` units in the inventory ``settings`` name, instead of the
    demo catalog's hundreds (the settings say ``seed_demo_catalog=False``): a long run (or a
    saga that holds its reservation while it waits) would empty them."""
    inventory = build_inventory(settings)
    try:
        prepare(inventory, settings)
        inventory.seed(p.model_copy(update={"stock": stock}) for p in DEMO_CATALOG if p.sku in SKUS)
    finally:
        inventory.engine.dispose()


def order(n: int, token: str = "tok_ok") -> PlaceOrder:
    """The n-th order of a run: one unit of a well-stocked sku, paid and shipped (COMPLETED);
    ``tok_review`` holds it for a payment review instead."""
    return PlaceOrder(
        customer_id="bench",
        items=[OrderItem(sku=SKUS[n % len(SKUS)], quantity=1)],
        payment_token=token,
        shipping_address=ADDRESS,
    )


def new_saga(settings: Settings, n: int, token: str = "tok_ok") -> OrderSagaInput:
    """The n-th order as the saga's input, under a fresh order id, with ``settings``' policies."""
    return settings.saga_input(str(uuid.uuid4()), order(n, token))


async def drive(name: str, orders: int, concurrency: int, one: One) -> Run:
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


async def drive_alternating(subjects: dict[str, One], orders: int) -> list[Run]:
    """One at a time, the subjects taking turns order by order: at concurrency 1 the rows are
    then measured over the same moments, and a drift in the machine's speed (this is a shared
    VM) reaches each row alike rather than whichever ran during it. Throughput is orders over
    the time spent on them."""
    latencies: dict[str, list[float]] = {name: [] for name in subjects}
    for n in range(orders):
        for name, one in subjects.items():
            started = time.perf_counter()
            await one(n)
            latencies[name].append((time.perf_counter() - started) * 1000)
    return [Run(name, 1, taken, sum(taken) / 1000) for name, taken in latencies.items()]


def floor(client: Client, task_queue: str, steps: int, activity_queue: str | None = None) -> One:
    """A bare workflow of ``steps`` sequential no-op activities."""

    async def one(_: int) -> None:
        await client.execute_workflow(
            Floor.run,
            args=[steps, activity_queue],
            id=f"floor-{uuid.uuid4()}",
            task_queue=task_queue,
        )

    return one


def saga_via_client(client: Client, settings: Settings) -> One:
    """Start the saga as the API does, with its search attributes, and
    wait for its result: the API's work on the saga, without the API."""

    async def one(n: int) -> None:
        saga = new_saga(settings, n)
        state = await client.execute_workflow(
            OrderSaga.run,
            saga,
            id=workflow_id(saga.order_id),
            task_queue=saga.task_queues.orders,
            search_attributes=start_search_attributes(saga.customer_id),
        )
        if state.status is not OrderStatus.COMPLETED:
            raise RuntimeError(f"bench order {saga.order_id} ended {state.status}")

    return one


def saga_via_api(http: httpx.AsyncClient, poll: float) -> One:
    """``POST /orders?wait=60``, which answers when the saga ends: one request per order. Only
    if it had not ended by then (or its state could not be read), ``GET /orders/{id}?wait=60``
    after ``poll`` seconds, until it has."""

    async def one(n: int) -> None:
        response = await http.post(
            "/orders", json=order(n).model_dump(), params={"wait": LONG_POLL}
        )
        response.raise_for_status()
        order_id, status = response.json()["order_id"], response.json()["status"]
        while not _ended(order_id, status):
            await asyncio.sleep(poll)
            answer = await http.get(f"/orders/{order_id}", params={"wait": LONG_POLL})
            if answer.status_code != 503:  # 503: the API could not ask; ask again
                answer.raise_for_status()
                status = answer.json()["status"]

    return one


def _ended(order_id: str, status: str) -> bool:
    if status in ("FAILED", "CANCELLED"):
        raise RuntimeError(f"bench order {order_id} ended {status}")
    return status == "COMPLETED"
