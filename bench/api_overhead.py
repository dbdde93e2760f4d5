"""What the API adds to placing an order, part by part, one order at a time.

    make bench-api                            # python -m bench.api_overhead [--orders 100]

``make bench`` judges the API's overhead as the difference of two rows' p50 over whole sagas
(100-200 ms each here), which this shared machine's noise moves by several milliseconds from
run to run. This measures only the part that differs, the start, through each layer in turn:

1. the Temporal client's ``start_workflow``, as ``make bench``'s client row starts the saga;
2. ``Sagas.place``: the API's own start (the request hash, the memo, the summary), in process;
3. ``POST /orders`` through the whole FastAPI app in process (ASGI, no socket);
4. ``POST /orders`` over HTTP to the stack's API (uvicorn), as a user's client sends it;
5. a ``GET`` of an unknown path over HTTP: the HTTP round trip and FastAPI's 404 alone.

Each round places one order through each path, the order of the paths rotating from round to
round (so none always follows another), and waits, untimed, for each saga to end before the
next: one saga at a time. Prints p50, p90, and the paired median difference from row 1 (each
round's path against the client's start in the same round).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from temporalio.client import Client

from api.main import create_app
from api.sagas import Sagas
from bench.drivers import new_saga, order
from bench.results import add_results_option, publish
from bench.saga_vs_floor import start_stack
from bench.stats import Run, table
from cloudmart.contracts.saga import start_search_attributes, workflow_id
from cloudmart.process import exit_now
from cloudmart.temporal import connect
from devstack.stack import DevStack
from workflows.order_saga import OrderSaga

Placing = Callable[[int], Awaitable[tuple[float, str | None]]]
"""One way to place the n-th order: (milliseconds taken, the order id placed, if any)."""

WARM_UP = 5


def rotations(names: list[str], rounds: int) -> list[list[str]]:
    """Each round's order: the names rotated by one more each round, so that over len(names)
    rounds each name takes each position once."""
    return [names[r % len(names) :] + names[: r % len(names)] for r in range(rounds)]


def paths(
    stack: DevStack, client: Client, http: httpx.AsyncClient, asgi: httpx.AsyncClient
) -> dict[str, Placing]:
    settings = stack.settings
    sagas = Sagas(client, settings)

    async def client_start(n: int) -> tuple[float, str | None]:
        saga = new_saga(settings, n)
        started = time.perf_counter()
        await client.start_workflow(
            OrderSaga.run,
            saga,
            id=workflow_id(saga.order_id),
            task_queue=saga.task_queues.orders,
            search_attributes=start_search_attributes(saga.customer_id),
        )
        return (time.perf_counter() - started) * 1000, saga.order_id

    async def place(n: int) -> tuple[float, str | None]:
        started = time.perf_counter()
        accepted = await sagas.place(order(n), None)
        return (time.perf_counter() - started) * 1000, accepted.order_id

    def post(through: httpx.AsyncClient) -> Placing:
        async def one(n: int) -> tuple[float, str | None]:
            started = time.perf_counter()
            response = await through.post("/orders", json=order(n).model_dump())
            taken = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            return taken, response.json()["order_id"]

        return one

    async def not_found(_: int) -> tuple[float, str | None]:
        started = time.perf_counter()
        response = await http.get("/no-such-path")
        taken = (time.perf_counter() - started) * 1000
        if response.status_code != 404:
            raise RuntimeError(f"expected a 404, got {response.status_code}")
        return taken, None

    return {
        "client.start_workflow": client_start,
        "Sagas.place, in process": place,
        "POST /orders, ASGI in process": post(asgi),
        "POST /orders over HTTP": post(http),
        "GET 404 over HTTP": not_found,
    }


async def measure(stack: DevStack, orders: int) -> dict[str, list[float]]:
    client = await connect(stack.settings)
    app = create_app(stack.settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(base_url=stack.api_url, timeout=60) as http,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as asgi,
    ):
        ways = paths(stack, client, http, asgi)
        taken: dict[str, list[float]] = {name: [] for name in ways}
        for round_, names in enumerate(rotations(list(ways), WARM_UP + orders)):
            for name in names:
                ms, order_id = await ways[name](round_)
                if order_id is not None:  # one saga at a time: let it end, untimed
                    await client.get_workflow_handle(workflow_id(order_id)).result()
                if round_ >= WARM_UP:
                    taken[name].append(ms)
    return taken


def report(taken: dict[str, list[float]]) -> str:
    """The table: a row per path, in the order given; the first is the baseline."""
    names = list(taken)
    baseline = taken[names[0]]
    rows = []
    for name in names:
        xs = taken[name]
        paired = statistics.median(a - b for a, b in zip(xs, baseline, strict=True))
        rows.append(
            [
                name,
                str(len(xs)),
                f"{statistics.median(xs):.2f}",
                f"{Run(name, 1, xs, 1.0).percentile(90):.2f}",
                f"{paired:+.2f}",
            ]
        )
    headers = ["path", "N", "p50 ms", "p90 ms", f"paired p50 vs {names[0]}"]
    return "\n".join(
        [
            "placing an order, one at a time, the paths taking turns (file-backed dev server,",
            "SQLite service databases; the saga's own time is not in these figures)",
            table(rows, headers),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100, help="rounds, one order per path")
    add_results_option(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cloudmart-api-") as data:
        stack = start_stack(Path(data))
        try:
            taken = asyncio.run(measure(stack, args.orders))
        finally:
            stack.stop()
    text = report(taken)
    print(text)
    print(f"written: {publish('api_overhead', text, args.results)}")


if __name__ == "__main__":
    main()
    exit_now(0)
