"""What watching costs the sagas: metrics on against off, and fifty open order pages.

    make bench-observability          # python -m bench.observability [--orders 100]

1. **Metrics.** Two stacks side by side, one serving metrics from every process (as ``make up``
   does) and one with none, each its own dev server, workers and API. Orders go through each
   API's ``POST /orders?wait=`` taking turns, one at a time (so a drift of this shared machine
   reaches both alike), then at concurrency 10 in alternating blocks. Goal: metrics cost at most
   5% of the saga's p50 and of its throughput.
2. **Fifty open pages.** On the metrics stack, the saga's p50 with no console page open, against
   fifty pages (server-sent event streams) open on fifty orders held for payment review (running
   sagas, so their watches keep asking; placed and held before anything is timed), in
   alternating blocks, each open block timed from SETTLE seconds after the pages opened. The
   console asks each order once per half second whatever the number of its pages, less often
   (up to every 4 s) while it does not change (api/console/feed.py); goal: the sagas do not
   slow down noticeably.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from bench.drivers import order, saga_via_api
from bench.results import add_results_option, publish
from bench.saga_vs_floor import start_stack
from bench.stats import Run, table
from cloudmart.process import exit_now
from devstack.processes import free_port_range
from devstack.stack import DevStack

CONCURRENCY = 10
BLOCK = 10
"""Orders per block when the subjects alternate in blocks."""
PAGES = 50
SETTLE = 10
"""Seconds the pages are open before a block is timed: each watch has slowed to its steady pace
on an order that does not change (api/console/feed.py: 0.5 s doubling to 4 s)."""
WARM_UP = 5


async def _one_at_a_time(apis: dict[str, httpx.AsyncClient], orders: int) -> list[Run]:
    taken: dict[str, list[float]] = {name: [] for name in apis}
    ones = {name: saga_via_api(http, 0.05) for name, http in apis.items()}
    for n in range(WARM_UP + orders):
        names = list(ones) if n % 2 else list(ones)[::-1]  # neither always goes first
        for name in names:
            began = time.perf_counter()
            await ones[name](n)
            if n >= WARM_UP:
                taken[name].append((time.perf_counter() - began) * 1000)
    return [Run(name, 1, xs, sum(xs) / 1000) for name, xs in taken.items()]


async def _in_blocks(apis: dict[str, httpx.AsyncClient], orders: int) -> list[Run]:
    """At CONCURRENCY, the subjects taking turns block by block; throughput is orders over the
    time each subject's blocks took."""
    taken: dict[str, list[float]] = {name: [] for name in apis}
    elapsed = dict.fromkeys(apis, 0.0)
    ones = {name: saga_via_api(http, 0.05) for name, http in apis.items()}
    for block in range(max(1, orders // BLOCK)):
        for name in list(ones) if block % 2 else list(ones)[::-1]:
            gate = asyncio.Semaphore(CONCURRENCY)

            async def timed(n: int, name: str = name, gate: asyncio.Semaphore = gate) -> None:
                async with gate:
                    began = time.perf_counter()
                    await ones[name](n)
                    taken[name].append((time.perf_counter() - began) * 1000)

            began = time.perf_counter()
            await asyncio.gather(*(timed(block * BLOCK + i) for i in range(BLOCK * 2)))
            elapsed[name] += time.perf_counter() - began
    return [Run(name, CONCURRENCY, xs, elapsed[name]) for name, xs in taken.items()]


async def held_orders(http: httpx.AsyncClient, count: int) -> list[str]:
    """``count`` orders held for payment review, each waiting there (its saga has run its
    steps up to the hold), so that only the pages, not the sagas, load the machine."""
    held = []
    for n in range(count):
        placed = await http.post("/orders", json=order(n, "tok_review").model_dump())
        placed.raise_for_status()
        held.append(placed.json()["order_id"])
    waiting = set(held)
    while waiting:  # the API's answers are the only signal: polled
        for order_id in list(waiting):
            if (await http.get(f"/orders/{order_id}")).json()[
                "status"
            ] == "AWAITING_PAYMENT_REVIEW":
                waiting.discard(order_id)
        await asyncio.sleep(0.2)
    return held


@contextlib.asynccontextmanager
async def open_pages(http: httpx.AsyncClient, held: list[str]) -> AsyncIterator[None]:
    """An order page open on each held order, streaming its live panel, from SETTLE seconds
    before the block until after it."""
    stop = asyncio.Event()

    async def page(order_id: str) -> None:
        async with http.stream("GET", f"/console/orders/{order_id}/live") as live:
            async for _ in live.aiter_lines():
                if stop.is_set():
                    return

    tasks = [asyncio.create_task(page(order_id)) for order_id in held]
    await asyncio.sleep(SETTLE)
    try:
        yield
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _pages(http: httpx.AsyncClient, orders: int) -> list[Run]:
    one = saga_via_api(http, 0.05)
    held = await held_orders(http, PAGES)
    taken: dict[str, list[float]] = {"no page open": [], f"{PAGES} pages open": []}
    for n in range(WARM_UP):
        await one(n)
    for block in range(max(2, orders // BLOCK)):
        watching = block % 2 == 1
        name = f"{PAGES} pages open" if watching else "no page open"
        async with open_pages(http, held) if watching else contextlib.nullcontext():
            for n in range(BLOCK):
                began = time.perf_counter()
                await one(block * BLOCK + n)
                taken[name].append((time.perf_counter() - began) * 1000)
    return [Run(name, 1, xs, sum(xs) / 1000) for name, xs in taken.items()]


def _rows(runs: list[Run]) -> list[list[str]]:
    base = runs[-1]
    rows = []
    for run in runs:
        rows.append(
            [
                run.name,
                str(run.concurrency),
                str(len(run.latencies_ms)),
                f"{run.p50:.1f}",
                f"{run.percentile(95):.1f}",
                f"{run.throughput:.1f}",
                f"{(run.p50 / base.p50 - 1) * 100:+.1f}%",
                f"{(run.throughput / base.throughput - 1) * 100:+.1f}%",
            ]
        )
    return rows


HEADERS = ["stack", "C", "N", "p50 ms", "p95 ms", "orders/s", "p50 vs last", "orders/s vs last"]


async def measure(on: DevStack, off: DevStack, orders: int) -> str:
    async with (
        httpx.AsyncClient(base_url=on.api_url, timeout=120) as metrics_on,
        httpx.AsyncClient(base_url=off.api_url, timeout=120) as metrics_off,
    ):
        apis = {"metrics on (make up's default)": metrics_on, "metrics off": metrics_off}
        serial = await _one_at_a_time(apis, orders)
        blocks = await _in_blocks(apis, orders)
        pages = await _pages(metrics_on, orders)
    return "\n".join(
        [
            "1. metrics on against off: POST /orders?wait= to each stack's API, the two taking",
            "turns (one at a time: order by order; at C=10: block by block)",
            table(_rows(serial) + _rows(blocks), HEADERS),
            "",
            f"2. the saga's latency with {PAGES} console pages open on {PAGES} orders held for",
            f"review (opened {SETTLE} s before each block: each watch at its steady pace, asking",
            "every 4 s), blocks alternating with none open",
            table(_rows(pages[::-1]), HEADERS),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100, help="orders per row")
    add_results_option(parser)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="cloudmart-obs-on-") as on_data,
        tempfile.TemporaryDirectory(prefix="cloudmart-obs-off-") as off_data,
    ):
        on = start_stack(Path(on_data), metrics_port=free_port_range(4))
        off = start_stack(Path(off_data))
        try:
            text = asyncio.run(measure(on, off, args.orders))
        finally:
            on.stop()
            off.stop()
    print(text)
    print(f"written: {publish('observability', text, args.results)}")


if __name__ == "__main__":
    main()
    exit_now(0)
