"""The read side, measured: what CQRS buys, what a rebuild costs, what snapshots save.

    make bench-read                                  # the default sizes (~25 minutes)
    make bench-read BENCH_ARGS="--orders 500 --events 5000 --account-events 1000"   # a quick look

Three tables, every row measured in this run:

1. Questions at ``--orders`` real orders (sagas run to their end on an in-memory dev server
   with ``make up``'s worker): "a customer's completed orders, newest first, first page" and
   "products of a category in stock under a price, cheapest first, with units reserved and sold",
   answered from the projections (in process, and through the API) versus through Temporal:
   its visibility store (for the listing, the best Temporal itself can do) and by querying every
   workflow's state (what a system without a read side must do, and the only way to the
   product question).
2. Rebuilding every projection from ``--events`` events (the real sagas' event streams, copied
   under new order ids until there are enough), in one transaction, versus projecting the same
   events live in batches of 500, on SQLite and (when reachable) PostgreSQL.
3. Loading a loyalty account of ``--account-events`` events: the latest snapshot plus the events
   after it, versus replaying all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from temporalio.client import Client, WorkflowFailureError

from bench.results import add_results_option, publish
from bench.stats import table
from cloudmart.contracts.events import Event, EventType, event_id
from cloudmart.contracts.orders import (
    OrderItem,
    OrderState,
    OrderStatus,
    PlaceOrder,
    ShippingAddress,
    saga_input,
)
from cloudmart.contracts.saga import CUSTOMER_ID, ORDER_STATUS, WORKFLOW_TYPE, workflow_id
from cloudmart.process import exit_now
from cloudmart.settings import Settings
from cloudmart.temporal import connect
from devstack.stack import DevStack, settings_env, throwaway_settings
from services.database import create_db_engine
from services.event_store.store import EventStore
from services.factory import build_event_store, build_inventory, prepare
from services.inventory.catalog import ProductSeed
from services.loyalty.service import LoyaltyService
from services.migrations import upgrade
from services.readmodel.projector import Projector
from services.readmodel.queries import ProductSort, ReadModel
from workflows.order_saga import OrderSaga

CATEGORIES = ("audio", "books", "garden", "kitchen", "office", "toys")
CATALOG = tuple(
    ProductSeed(
        sku=f"{category[:3].upper()}-{n:02d}",
        name=f"{category.title()} item {n}",
        category=category,
        price_cents=500 + 250 * n,
        stock=1_000_000,  # every order can be served: the mix of outcomes comes from tokens
    )
    for category in CATEGORIES
    for n in range(8)
)
CUSTOMERS = 100
PAGE = 20
SEARCH = {"category": "kitchen", "max_price": 2_000, "in_stock": True}


# --- the orders ------------------------------------------------------------------------------


def order(n: int, rng: random.Random) -> PlaceOrder:
    token, country = "tok_ok", "NL"
    roll = rng.random()
    if roll < 0.05:
        token = "tok_decline"
    elif roll < 0.10:
        country = "JP"  # undeliverable
    lines = rng.sample(CATALOG, rng.randint(1, 3))
    return PlaceOrder(
        customer_id=f"bench-{n % CUSTOMERS:03d}",
        items=[OrderItem(sku=p.sku, quantity=rng.randint(1, 3)) for p in lines],
        payment_token=token,
        shipping_address=ShippingAddress(
            name="Bench", line1="1 Main St", city="Utrecht", postal_code="3511", country=country
        ),
    )


async def place_orders(client: Client, settings: Settings, count: int) -> float:
    """Run ``count`` sagas to their end, 50 at a time; returns the seconds it took."""
    rng = random.Random(5)
    gate = asyncio.Semaphore(50)

    async def one(n: int) -> None:
        async with gate:
            order_id = str(uuid.uuid4())
            handle = await client.start_workflow(
                OrderSaga.run,
                saga_input(
                    order_id,
                    order(n, rng),
                    payment_review_timeout=timedelta(hours=1),
                    task_queues=settings.task_queues,
                ),
                id=workflow_id(order_id),
                task_queue=settings.task_queues.orders,
            )
            # A declined or undeliverable order ends FAILED, as it should.
            with contextlib.suppress(WorkflowFailureError):
                await handle.result()

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(count)))
    return time.perf_counter() - started


# --- the questions, both ways ----------------------------------------------------------------


def timed(samples: int, question: Callable[[], object]) -> tuple[list[float], object]:
    latencies, answer = [], None
    for _ in range(samples):
        started = time.perf_counter()
        answer = question()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies, answer


async def timed_async(samples: int, question: Callable[[], object]) -> tuple[list[float], object]:
    latencies, answer = [], None
    for _ in range(samples):
        started = time.perf_counter()
        answer = await question()  # type: ignore[misc]
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies, answer


async def every_state(client: Client, settings: Settings) -> list[OrderState]:
    """What a system without a read side does: find every saga, ask each for its state."""
    query = f'WorkflowType = "{WORKFLOW_TYPE}" AND TaskQueue = "{settings.task_queues.orders}"'
    handles = [
        client.get_workflow_handle_for(OrderSaga.run, execution.id)
        async for execution in client.list_workflows(query, page_size=1000)
    ]
    gate = asyncio.Semaphore(50)

    async def state(handle) -> OrderState:  # type: ignore[no-untyped-def]
        async with gate:
            return await handle.query(OrderSaga.state)

    return await asyncio.gather(*(state(h) for h in handles))


def listing_from(states: list[OrderState], customer: str) -> list[str]:
    mine = [s for s in states if s.customer_id == customer and s.status is OrderStatus.COMPLETED]
    mine.sort(key=lambda s: (s.created_at, s.order_id), reverse=True)
    return [s.order_id for s in mine[:PAGE]]


def search_from(states: list[OrderState], catalog: dict[str, ProductSeed]) -> list[str]:
    sold, reserved = Counter[str](), Counter[str]()
    for state in states:
        if state.status is OrderStatus.COMPLETED:
            sold.update({item.sku: item.quantity for item in state.items})
        elif not state.status.is_terminal and state.total_cents is not None:
            reserved.update({item.sku: item.quantity for item in state.items})
    hits = [
        p
        for p in catalog.values()
        if p.category == SEARCH["category"]
        and p.price_cents <= SEARCH["max_price"]
        and p.stock - sold[p.sku] - reserved[p.sku] > 0
    ]
    return [p.sku for p in sorted(hits, key=lambda p: (p.price_cents, p.sku))]


async def questions(stack: DevStack, samples: int, scans: int) -> list[list[str]]:
    settings = stack.settings
    client = await connect(settings)
    read = ReadModel(create_db_engine(settings.db_url("readmodel"), pool_size=2))
    customer = "bench-007"
    catalog = {p.sku: p for p in CATALOG}
    rows: list[list[str]] = []

    async with httpx.AsyncClient(base_url=stack.api_url, timeout=600) as http:

        async def via_api(path: str, **params: object):  # type: ignore[no-untyped-def]
            response = await http.get(path, params=params)
            response.raise_for_status()
            return response.json()

        # The listing.
        ms, listing = timed(
            samples,
            lambda: read.orders(customer_id=customer, status=OrderStatus.COMPLETED, limit=PAGE),
        )
        expected = [o.order_id for o in listing.items]  # type: ignore[attr-defined]
        rows.append(["list", "projection, in process", *summary(ms), len(expected)])
        ms, page = await timed_async(
            samples,
            lambda: via_api("/orders", customer_id=customer, status="COMPLETED", page_size=PAGE),
        )
        assert [o["order_id"] for o in page["items"]] == expected  # type: ignore[index]
        rows.append(["list", "projection, GET /orders", *summary(ms), len(expected)])

        async def visibility() -> list[str]:
            found = [
                e
                async for e in client.list_workflows(
                    f'{CUSTOMER_ID.name} = "{customer}" AND {ORDER_STATUS.name} = "COMPLETED"'
                )
            ]
            # The dev server's visibility cannot order by start time: sort them here.
            found.sort(key=lambda e: e.start_time, reverse=True)
            return [e.id.removeprefix("order-") for e in found[:PAGE]]

        ms, answer = await timed_async(samples, visibility)
        rows.append(["list", "Temporal visibility", *summary(ms), len(answer)])  # type: ignore[arg-type]

        async def scan_list() -> list[str]:
            return listing_from(await every_state(client, settings), customer)

        ms, answer = await timed_async(scans, scan_list)
        assert answer == expected, "the projection and the sagas disagree"
        rows.append(["list", "Temporal, query every saga", *summary(ms), len(answer)])  # type: ignore[arg-type]

        # The product search.
        ms, found = timed(samples, lambda: read.products(**SEARCH, sort=ProductSort.PRICE))
        expected = [p.sku for p in found]  # type: ignore[attr-defined]
        rows.append(["search", "projection, in process", *summary(ms), len(expected)])
        ms, answer = await timed_async(
            samples, lambda: via_api("/products", **SEARCH, sort="price")
        )
        assert [p["sku"] for p in answer] == expected  # type: ignore[union-attr]
        rows.append(["search", "projection, GET /products", *summary(ms), len(expected)])

        async def scan_search() -> list[str]:
            return search_from(await every_state(client, settings), catalog)

        ms, answer = await timed_async(scans, scan_search)
        assert answer == expected, "the projection and the sagas disagree"
        rows.append(["search", "Temporal, query every saga", *summary(ms), len(answer)])  # type: ignore[arg-type]
    read.engine.dispose()
    return rows


def summary(latencies: list[float]) -> list[str]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return [str(len(latencies)), f"{statistics.median(latencies):.2f}", f"{p99:.2f}"]


def with_ratios(rows: list[list[str]]) -> list[list[str]]:
    """Each row's p50 against the in-process projection's, per question."""
    base = {row[0]: float(row[3]) for row in rows if row[1] == "projection, in process"}
    return [[*row[:6], f"{float(row[3]) / base[row[0]]:,.0f}x"] for row in rows]


# --- the rebuild -----------------------------------------------------------------------------


def copy_events(source: EventStore, target: EventStore, total: int) -> int:
    """Fill ``target`` with ``source``'s order streams, again and again under new order ids,
    in the source's order, until there are ``total`` events."""
    originals = source.read_after(0, limit=10_000_000)
    written, round_ = 0, 0
    while written < total:
        batch: list[Event] = []
        for event in originals:
            if written + len(batch) >= total:
                break
            aggregate = f"{event.aggregate_id}~{round_}" if round_ else event.aggregate_id
            batch.append(
                event.model_copy(
                    update={
                        "aggregate_id": aggregate,
                        "event_id": event_id(aggregate, event.sequence),
                    }
                )
            )
        for start in range(0, len(batch), 5000):
            target.append(
                [
                    Event(**e.model_dump(exclude={"position", "recorded_at"}))
                    for e in batch[start : start + 5000]
                ]
            )
        written += len(batch)
        round_ += 1
    return written


@contextmanager
def postgres_databases(names: tuple[str, ...]) -> Iterator[dict[str, str] | None]:
    admin = create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
    )
    suffix = uuid.uuid4().hex[:8]
    try:
        with admin.connect() as connection:
            for name in names:
                connection.execute(text(f"CREATE DATABASE bench_{name}_{suffix}"))
    except OperationalError:
        yield None
        return
    try:
        yield {
            name: f"postgresql+psycopg://postgres@127.0.0.1:5432/bench_{name}_{suffix}"
            for name in names
        }
    finally:
        with admin.connect() as connection:
            for name in names:
                connection.execute(
                    text(f"DROP DATABASE IF EXISTS bench_{name}_{suffix} WITH (FORCE)")
                )
        admin.dispose()


def rebuild(source: EventStore, settings: Settings, total: int, data: Path) -> list[list[str]]:
    rows: list[list[str]] = []
    backends: list[tuple[str, dict[str, str] | None]] = [
        (
            "SQLite",
            {
                name: f"sqlite:///{data / f'rebuild-{name}.db'}"
                for name in ("event_store", "readmodel", "inventory")
            },
        )
    ]
    with postgres_databases(("event_store", "readmodel", "inventory")) as pg:
        if pg is not None:
            backends.append(("PostgreSQL", pg))
        for backend, urls in backends:
            assert urls is not None
            store = EventStore(create_db_engine(urls["event_store"], pool_size=2))
            upgrade("event_store", store.engine)
            inventory = build_inventory(
                settings.model_copy(update={"inventory_db_url": urls["inventory"]})
            )
            prepare(inventory, settings)
            inventory.seed(CATALOG)
            events = copy_events(source, store, total)
            readmodel = create_db_engine(urls["readmodel"], pool_size=2)
            upgrade("readmodel", readmodel)
            projector = Projector(store, readmodel, inventory.catalog)
            started = time.perf_counter()
            projector.sync_catalog()
            assert projector.catch_up() == events
            live = time.perf_counter() - started
            started = time.perf_counter()
            assert projector.rebuild() == events
            rebuilt = time.perf_counter() - started
            rows.append(
                [
                    backend,
                    "live, batches of 500",
                    str(events),
                    f"{live:.1f}",
                    f"{events / live:,.0f}",
                ]
            )
            rows.append(
                [
                    backend,
                    "rebuild, one transaction",
                    str(events),
                    f"{rebuilt:.1f}",
                    f"{events / rebuilt:,.0f}",
                ]
            )
            for engine in (store.engine, readmodel, inventory.engine):
                engine.dispose()
    return rows


# --- snapshots -------------------------------------------------------------------------------


def snapshots(data: Path, count: int, every: int, samples: int) -> list[list[str]]:
    store = EventStore(
        create_db_engine(f"sqlite:///{data / 'loyalty-event_store.db'}", pool_size=2)
    )
    upgrade("event_store", store.engine)
    events: list[Event] = []
    started_at = time.time()
    for n in range(count):
        order_id = f"loyal-{n:06d}"
        for sequence, event_type, payload in (
            (1, EventType.ORDER_PLACED, {"customer_id": "loyal", "items": [], "country": "NL"}),
            (2, EventType.ORDER_COMPLETED, {"total_cents": 1_000 + n}),
        ):
            events.append(
                Event(
                    event_id=event_id(order_id, sequence),
                    aggregate_id=order_id,
                    sequence=sequence,
                    event_type=event_type,
                    data=payload,
                    version=2 if sequence == 1 else 1,
                    occurred_at=datetime.fromtimestamp(started_at + n, UTC),
                    user_id="loyal",
                )
            )
    for start in range(0, len(events), 5000):
        store.append(events[start : start + 5000])
    engine = create_db_engine(f"sqlite:///{data / 'loyalty.db'}", pool_size=2)
    upgrade("loyalty", engine)
    loyalty = LoyaltyService(engine, store, snapshot_every=every)
    loyalty.catch_up()
    with_snapshot, account = timed(samples, lambda: loyalty.account("loyal"))
    without, replayed = timed(samples, lambda: loyalty.replay("loyal"))
    assert account == replayed and account.version == count  # type: ignore[union-attr]
    base = statistics.median(without)
    return [
        ["full replay", str(count), *summary(without)[1:], "1.0x"],
        [
            f"snapshot (every {every}) + later events",
            str(count),
            *summary(with_snapshot)[1:],
            f"{base / statistics.median(with_snapshot):.0f}x faster",
        ],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--account-events", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=200, help="per projection question")
    parser.add_argument("--scans", type=int, default=1, help="per query-every-saga question")
    add_results_option(parser)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cloudmart-bench-read-") as tmp:
        data = Path(tmp)
        settings = throwaway_settings(data / "stack", seed_demo_catalog=False)
        inventory = build_inventory(settings)
        prepare(inventory, settings)
        inventory.seed(CATALOG)
        inventory.engine.dispose()
        stack = DevStack(settings, settings_env(settings), output=None, persist=False)
        try:
            stack.start()
            placed_in, lags, behind = asyncio.run(place_orders_and_wait(stack, args.orders))
            asked = asyncio.run(questions(stack, args.samples, args.scans))
        finally:
            stack.stop()
        source = build_event_store(settings)
        source_events = source.head()
        rebuilt = rebuild(source, settings, args.events, data)
        source.engine.dispose()
        loaded = snapshots(data, args.account_events, settings.snapshot_every, 50)

    lag = summary(lags)
    text = "\n".join(
        [
            f"{args.orders} orders placed in {placed_in:.0f} s ({source_events} events)",
            f"projection lag while placing them (/healthz, {lag[0]} samples): p50 {lag[1]} ms, "
            f"p99 {lag[2]} ms, max {max(lags):.2f} ms; at most {behind} events behind",
            f"\n1. Questions at {args.orders} orders",
            table(
                with_ratios(asked),
                ["question", "answered from", "n", "p50 ms", "p99 ms", "rows", "p50 vs projection"],
            ),
            f"\n2. Rebuilding the projections from {args.events} events",
            table(rebuilt, ["database", "how", "events", "seconds", "events/s"]),
            f"\n3. Loading a loyalty account of {args.account_events} events",
            table(loaded, ["loading", "events", "p50 ms", "p99 ms", "vs full replay"]),
        ]
    )
    print(text)
    print(f"written: {publish('read_side', text, args.results)}")


async def place_orders_and_wait(stack: DevStack, count: int) -> tuple[float, list[float], int]:
    """Place the orders while sampling the projection lag ``/healthz`` reports (4 times a
    second); then wait until the projector has every event. Returns the seconds the orders took,
    the lags seen, and the most events the projector was ever behind."""
    client = await connect(stack.settings)
    lags: list[float] = []
    behind = 0
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:

        async def sample() -> None:
            nonlocal behind
            while True:
                projections = (await http.get("/healthz")).json()["projections"]
                if projections["lag_ms"] is not None:
                    lags.append(projections["lag_ms"])
                behind = max(behind, projections["events_behind"])
                await asyncio.sleep(0.25)

        sampler = asyncio.create_task(sample())
        seconds = await place_orders(client, stack.settings, count)
        sampler.cancel()
        while True:
            health = (await http.get("/healthz")).json()
            if health["projections"]["events_behind"] == 0:
                break
            await asyncio.sleep(0.2)
    return seconds, lags, behind


if __name__ == "__main__":
    main()
    exit_now(0)
