"""The read side's customer views at scale: ``GET /customers/{id}/view`` and ``GET
/stats/customers`` at ``--customers`` customers (goal: p50 ≤ 5 ms at 10,000).

    make bench-customers                                  # 10,000 customers (~5 minutes)
    make bench-customers BENCH_ARGS="--customers 1000"    # a quick look

The customers and their orders are seeded straight into the event store, not placed through
sagas (10,000 customers' orders would take hours of sagas, and the views read only the events):
``UserCreated`` for four customers in five, with a profile sealed under a key of the customer's
own in the customers database as the customers service seals it, the fifth known only from its
orders; 0 to 5 orders each over 90 days (90% completed, the rest declined and compensated),
1 to 3 lines from a 48-product catalog in 6 categories. The worker's projector
(services/factory.py's, which opens every profile) projects them; then each question is asked
one at a time, in process (``ReadModel``) and over HTTP to ``python -m api`` with tokens
required (the customer's own token for the view, the operator's for the statistics). A third
row answers the statistics by a scan of every ``user_view`` row instead of the pre-computed
tables, and must give the same figures. No Temporal is needed: both routes read the read side.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlmodel import Session

from api.tokens import mint
from bench.read_side import CATALOG
from bench.results import add_results_option, publish
from bench.stats import Run, table
from cloudmart.contracts.customers import Profile, customer_stream
from cloudmart.contracts.events import CURRENT_VERSION, Event, EventType, event_id
from cloudmart.process import exit_now
from cloudmart.settings import Settings
from devstack.processes import API_READY, ManagedProcess
from devstack.stack import settings_env, throwaway_settings
from services.customers.sealing import ProfileSealing
from services.database import create_db_engine, transaction
from services.factory import build_event_store, build_inventory, build_projector, prepare
from services.migrations import upgrade
from services.readmodel.customer_stats import (
    ACTIVE_WINDOW_DAYS,
    active_window,
    average_order_value,
    day_of,
    repeat_purchase_rate,
)
from services.readmodel.models import UserView
from services.readmodel.queries import CustomerStatistics, NewCustomers, ReadModel

START = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)
DAYS = 90
ORDERS_PER_CUSTOMER = ([0, 1, 2, 3, 4, 5], [15, 35, 25, 12, 8, 5])
WARM_UP = 20
GOAL_MS = 5.0


# --- the events ------------------------------------------------------------------------------


def event(stream: str, sequence: int, kind: EventType, at: datetime, **data: object) -> Event:
    return Event(
        event_id=event_id(stream, sequence),
        aggregate_id=stream,
        sequence=sequence,
        event_type=kind,
        data=data,
        version=CURRENT_VERSION[kind],
        occurred_at=at,
        user_id="bench",
    )


def order_story(order_id: str, customer: str, at: datetime, rng: random.Random) -> list[Event]:
    lines = [
        {"sku": p.sku, "quantity": rng.randint(1, 3), "unit_price_cents": p.price_cents}
        for p in rng.sample(CATALOG, rng.randint(1, 3))
    ]
    items = [{"sku": line["sku"], "quantity": line["quantity"]} for line in lines]
    total = sum(int(line["quantity"]) * int(line["unit_price_cents"]) for line in lines)
    story: list[tuple[EventType, dict[str, object]]] = [
        (EventType.ORDER_PLACED, {"customer_id": customer, "items": items, "country": "NL"}),
        (EventType.INVENTORY_RESERVED, {"lines": lines, "total_cents": total}),
    ]
    if rng.random() < 0.9:
        story += [
            (EventType.PAYMENT_CHARGED, {"amount_cents": total}),
            (EventType.INVENTORY_COMMITTED, {"lines": lines}),
            (EventType.ORDER_COMPLETED, {"total_cents": total}),
        ]
    else:
        failure = {"type": "PaymentDeclined", "message": "declined"}
        story += [
            (EventType.PAYMENT_DECLINED, failure),
            (EventType.COMPENSATION_STARTED, {"reason": "PaymentDeclined: declined"}),
            (
                EventType.INVENTORY_RELEASED,
                {"outcome": "UNDONE", "lines": lines, "amount_cents": 0},
            ),
            (EventType.ORDER_FAILED, failure),
        ]
    return [
        event(order_id, n, kind, at + timedelta(seconds=n), **data)
        for n, (kind, data) in enumerate(story, start=1)
    ]


def seed(settings: Settings, customers: int) -> tuple[int, int, int, float]:
    """The customers' keys, and every event, in the store in time order. Returns the customers
    registered, the orders, the events, and the seconds it took."""
    started = time.perf_counter()
    rng = random.Random(22)
    keys = create_db_engine(settings.db_url("customers"), pool_size=1)
    upgrade("customers", keys)
    sealing = ProfileSealing(keys)
    streams: list[tuple[datetime, list[Event]]] = []
    registered = orders = 0
    with transaction(keys) as session:
        for n in range(customers):
            customer = f"cust-{n:05d}"
            joined = START + timedelta(days=rng.randrange(DAYS), minutes=rng.randrange(600))
            if n % 5:
                registered += 1
                sealing.create_key(session, customer)
                profile = Profile(name=f"Customer {n}", email=f"{customer}@example.com")
                personal = sealing.seal(customer, profile, session=session)
                created = event(
                    customer_stream(customer),
                    1,
                    EventType.USER_CREATED,
                    joined,
                    customer_id=customer,
                    guest=False,
                    order_id=None,
                    personal=personal,
                )
                streams.append((joined, [created]))
            for k in range(rng.choices(*ORDERS_PER_CUSTOMER)[0]):
                at = joined + timedelta(days=rng.randrange(DAYS - (joined - START).days), minutes=k)
                streams.append((at, order_story(f"{customer}-o{k}", customer, at, rng)))
                orders += 1
    keys.dispose()
    streams.sort(key=lambda s: (s[0], s[1][0].aggregate_id))
    store = build_event_store(settings, pool_size=1)
    prepare(store, settings)
    batch: list[Event] = []
    for _, events in streams:
        batch.extend(events)
        if len(batch) >= 5000:
            store.append(batch)
            batch = []
    if batch:
        store.append(batch)
    events = store.head()
    store.engine.dispose()
    return registered, orders, events, time.perf_counter() - started


# --- the questions ---------------------------------------------------------------------------


def by_scan(engine: object) -> CustomerStatistics:
    """The statistics from every user_view row, in Python: what the pre-computed tables save."""
    with Session(engine) as session:  # type: ignore[arg-type]
        rows = session.execute(
            select(
                UserView.first_seen_at,
                UserView.last_order_at,
                UserView.completed_orders,
                UserView.lifetime_spend_cents,
                UserView.registered,
            )
        ).all()
    latest = max(
        max(day_of(first), day_of(last) if last else day_of(first)) for first, last, *_ in rows
    )
    new = Counter(day_of(first) for first, *_ in rows)
    since, until = active_window(latest)
    first = latest - timedelta(days=ACTIVE_WINDOW_DAYS - 1)
    buyers = sum(1 for *_, done, _, _ in rows if done >= 1)
    repeat = sum(1 for *_, done, _, _ in rows if done >= 2)
    completed = sum(done for *_, done, _, _ in rows)
    return CustomerStatistics(
        as_of=latest,
        customers=len(rows),
        registered=sum(1 for *_, r in rows if r),
        new_customers=[
            NewCustomers(day=d, customers=new[d])
            for d in (first + timedelta(days=n) for n in range(ACTIVE_WINDOW_DAYS))
        ],
        active_window_days=ACTIVE_WINDOW_DAYS,
        active_customers=sum(1 for _, last, *_ in rows if last and since <= day_of(last) <= until),
        buyers=buyers,
        repeat_buyers=repeat,
        repeat_purchase_rate=repeat_purchase_rate(buyers, repeat),
        completed_orders=completed,
        average_order_value_cents=average_order_value(
            sum(spent for *_, spent, _ in rows), completed
        ),
    )


def timed(samples: int, question: object) -> list[float]:
    latencies = []
    for n in range(WARM_UP + samples):
        started = time.perf_counter()
        question(n)  # type: ignore[operator]
        if n >= WARM_UP:
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def row(question: str, where: str, latencies: list[float]) -> list[str]:
    run = Run(where, 1, latencies, 1)
    return [question, where, str(len(latencies)), f"{run.p50:.2f}", f"{run.percentile(95):.2f}"]


def ask(settings: Settings, customers: int, samples: int) -> list[list[str]]:
    engine = create_db_engine(settings.db_url("readmodel"), pool_size=2)
    read = ReadModel(engine)
    rng = random.Random(7)
    picked = [f"cust-{rng.randrange(customers):05d}" for _ in range(WARM_UP + samples)]
    rows = []
    rows.append(
        row("view", "ReadModel, in process", timed(samples, lambda n: read.customer(picked[n])))
    )
    stats = read.customer_stats()
    rows.append(
        row("stats", "ReadModel, in process", timed(samples, lambda _: read.customer_stats()))
    )
    scans = max(1, samples // 10)
    scanned = by_scan(engine)
    if scanned != stats:
        raise AssertionError(f"the pre-computed statistics {stats} differ from a scan {scanned}")
    rows.append(
        row("stats", "scan of user_view, in process", timed(scans, lambda _: by_scan(engine)))
    )

    api = ManagedProcess.start(
        "api",
        [sys.executable, "-m", "api"],
        env=settings_env(settings),
        output=None,
        ready_marker=API_READY,
    )
    try:
        api.wait_ready(60)
        assert settings.auth_secret is not None and settings.operator_token is not None
        secret = settings.auth_secret.get_secret_value()
        tokens = [{"Authorization": f"Bearer {mint(c, secret)}"} for c in picked]
        operator = {"Authorization": f"Bearer {settings.operator_token.get_secret_value()}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=30) as http:

            def view(n: int) -> None:
                response = http.get(f"/customers/{picked[n]}/view", headers=tokens[n])
                if response.status_code not in (200, 404):  # 404: a customer with no events
                    raise RuntimeError(response.text)

            def dashboard(_: int) -> None:
                response = http.get("/stats/customers", headers=operator)
                response.raise_for_status()

            rows.append(row("view", "GET /customers/{id}/view", timed(samples, view)))
            rows.append(row("stats", "GET /stats/customers", timed(samples, dashboard)))
            answered = http.get("/stats/customers", headers=operator).json()
            if CustomerStatistics.model_validate(answered) != stats:
                raise AssertionError("the API answered other statistics than the projection")
    finally:
        api.stop()
    engine.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=500, help="per question and path")
    add_results_option(parser)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cloudmart-bench-customers-") as tmp:
        settings = throwaway_settings(Path(tmp), seed_demo_catalog=False, require_auth=True)
        inventory = build_inventory(settings, pool_size=1)
        prepare(inventory, settings)
        inventory.seed(CATALOG)
        inventory.engine.dispose()
        registered, orders, events, seeded = seed(settings, args.customers)
        projector = build_projector(settings)
        prepare(projector, settings)
        started = time.perf_counter()
        projector.sync_catalog()
        if projector.catch_up() != events:
            raise AssertionError("the projector did not project every event")
        projected = time.perf_counter() - started
        stats = ReadModel(projector.engine).customer_stats()
        projector.engine.dispose()
        projector.store.engine.dispose()
        rows = ask(settings, args.customers, args.samples)

    p50s = [float(r[3]) for r in rows if not r[1].startswith("scan")]
    text = "\n".join(
        [
            f"{args.customers} customers ({registered} registered, the rest known only from "
            f"their orders), {orders} orders, {events} events seeded into the event store "
            f"(SQLite) in {seeded:.0f} s",
            f"projected by the worker's projector (profiles opened) in {projected:.0f} s "
            f"({events / projected:,.0f} events/s); as of {stats.as_of}: "
            f"{stats.active_customers} active, repeat-purchase rate "
            f"{stats.repeat_purchase_rate:.3f}, average order {stats.average_order_value_cents} "
            "cents",
            "",
            table(rows, ["question", "answered from", "n", "p50 ms", "p95 ms"]),
            "",
            f"goal p50 <= {GOAL_MS:.0f} ms: "
            + ("met on every path" if max(p50s) <= GOAL_MS else "NOT met on every path"),
        ]
    )
    print(text)
    print(f"written: {publish('customer_views', text, args.results)}")


if __name__ == "__main__":
    main()
    exit_now(0)
