"""The read side: projections built from the events real sagas recorded."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import Session
from temporalio.client import Client

from cloudmart.contracts.orders import CancelOrder, OrderState, OrderStatus
from cloudmart.settings import Settings
from devstack.stack import settings_env, throwaway_settings
from services.factory import Services
from services.readmodel import projector as projector_module
from services.readmodel.models import OrderSummary, ProductSearch
from services.readmodel.projector import PROJECTION_TABLES
from services.readmodel.queries import InvalidCursor, ProductSort, ReadModel
from tests.support import INITIAL_STOCK, Gate, new_saga_input, stock
from tests.workflows.saga_helpers import outcome, start
from workflows.order_saga import OrderSaga

MIX = [
    {"items": (("SKU-A", 2),)},
    {"items": (("SKU-B", 1), ("SKU-A", 1))},
    {"items": (("SKU-A", 101),)},
    {"token": "tok_decline"},
    {"country": "JP", "items": (("SKU-B", 3),)},
    {"items": (("NO-SUCH-SKU", 1),)},
    {"items": (("RACE-10", 4),)},
]


async def place_mix(client: Client, settings: Settings) -> list[OrderState]:
    states = []
    for scenario in MIX:  # one after the other: creation order is the list's order
        states.append(await outcome(await start(client, new_saga_input(settings, **scenario))))
    return states


def tables(services: Services) -> dict[str, list[dict]]:
    assert services.projector is not None
    with Session(services.projector.engine) as session:
        return {
            table.__tablename__: [
                row.model_dump()
                for row in session.scalars(
                    select(table).order_by(*table.__table__.primary_key.columns)
                )
            ]
            for table in PROJECTION_TABLES  # the customers' views among them
        }


async def test_projections_agree_with_the_sagas_and_the_services(
    client: Client, settings: Settings, workers: Services
) -> None:
    states = await place_mix(client, settings)
    projector = workers.projector
    assert projector is not None
    assert projector.catch_up() == sum(len(workers.event_store.stream(s.order_id)) for s in states)  # type: ignore[union-attr]
    read = ReadModel(projector.engine)

    listed = read.orders(limit=50).items
    assert [o.order_id for o in listed] == [s.order_id for s in reversed(states)]
    for row, state in zip(listed, reversed(states), strict=True):
        assert (row.status, row.customer_id, row.total_cents) == (
            state.status,
            state.customer_id,
            state.total_cents,
        )
        assert row.failure_type == (state.failure.type if state.failure else None)
        assert row.item_count == sum(item.quantity for item in state.items)

    # The search's stock is inventory's own, for every product.
    searched = {p.sku: (p.stock_on_hand, p.reserved) for p in read.products()}
    assert searched == stock(workers)

    stats = read.stats()
    sold = {p.sku: p for p in stats.products}
    assert sold["SKU-A"].units_sold == 3 and sold["SKU-A"].revenue_cents == 3000
    assert sold["SKU-B"].units_released == 3  # the undeliverable order's, given back
    assert sold["RACE-10"].units_sold == 4
    assert {f.type: f.orders for f in stats.failures} == {
        "OutOfStock": 1,
        "PaymentDeclined": 1,
        "Undeliverable": 1,
        "UnknownSku": 1,
    }
    # The customer's UserView: every order of theirs, as the sagas ended them.
    view = read.customer(states[0].customer_id)
    assert view is not None and not view.registered  # named by orders alone
    assert view.orders_by_status == Counter(str(s.status) for s in states)
    done = [s for s in states if s.status is OrderStatus.COMPLETED]
    assert view.lifetime_spend_cents == sum(s.total_cents or 0 for s in done)
    assert view.last_order is not None and view.last_order.order_id == states[-1].order_id
    assert view.favourite_categories == ["rare", "widgets"]  # 4 units each: by name
    status = read.status()
    assert status.position == workers.event_store.head()  # type: ignore[union-attr]
    assert status.lag_ms is not None and status.lag_ms >= 0


async def test_a_cancel_that_interrupts_a_reservation_inventory_committed_moves_no_stock(
    client: Client, settings: Settings, workers: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inventory reserves, and the cancel arrives before the saga hears back: no
    InventoryReserved, yet the release is UNDONE. The search must still show inventory's stock."""
    inventory, gate = workers.inventory, Gate()
    assert inventory is not None and workers.projector is not None
    reserve = inventory.reserve

    def reserve_then_hang(*args, **kwargs):  # type: ignore[no-untyped-def]
        reservation = reserve(*args, **kwargs)
        gate.pass_()  # committed; the answer is not back yet
        return reservation

    monkeypatch.setattr(inventory, "reserve", reserve_then_hang)
    handle = await start(client, new_saga_input(settings, items=(("SKU-A", 4),)))
    await gate.entered()
    await handle.execute_update(OrderSaga.cancel, CancelOrder(reason="changed my mind"))
    state = await outcome(handle)
    gate.open()
    assert state.status is OrderStatus.CANCELLED
    story = {e.event_type: e.data for e in workers.event_store.stream(state.order_id)}  # type: ignore[union-attr]
    assert "InventoryReserved" not in story
    assert story["InventoryReleased"]["outcome"] == "UNDONE"

    workers.projector.sync_catalog()  # as the projector's worker does when it starts
    workers.projector.catch_up()
    read = ReadModel(workers.projector.engine)
    assert {p.sku: (p.stock_on_hand, p.reserved) for p in read.products()} == stock(workers)
    assert stock(workers)["SKU-A"] == (INITIAL_STOCK["SKU-A"], 0)
    assert {p.sku: p.units_released for p in read.stats().products}["SKU-A"] == 4


async def test_a_crash_mid_batch_neither_skips_nor_doubles_an_event(
    client: Client,
    settings: Settings,
    workers: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await place_mix(client, settings)
    projector = workers.projector
    assert projector is not None
    original = projector_module._apply
    applied = 0

    def crash_on_the_fifth(*args, **kwargs):
        nonlocal applied
        applied += 1
        if applied == 5:
            raise ConnectionError("projector killed")
        return original(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(projector_module, "_apply", crash_on_the_fifth)
        assert projector.run_once(limit=3) == 3
        with pytest.raises(ConnectionError):
            projector.run_once(limit=3)  # events 4-6: rolled back with its checkpoint
    assert ReadModel(projector.engine).status().position == 3
    projector.catch_up()
    resumed = tables(workers)

    projector.rebuild()
    assert tables(workers) == resumed


async def test_a_rebuild_gives_the_live_tables_exactly(
    client: Client, settings: Settings, workers: Services
) -> None:
    projector = workers.projector
    assert projector is not None
    for scenario in MIX[:3]:
        await outcome(await start(client, new_saga_input(settings, **scenario)))
        projector.catch_up()  # live: a batch at a time, as events arrive
    await place_mix(client, settings)
    projector.catch_up()
    live = tables(workers)
    assert projector.rebuild() > 0
    assert tables(workers) == live


async def test_listing_filters_and_pages_newest_first(
    client: Client, settings: Settings, workers: Services
) -> None:
    states = await place_mix(client, settings)
    assert workers.projector is not None
    workers.projector.catch_up()
    read = ReadModel(workers.projector.engine)

    failed = read.orders(status=OrderStatus.FAILED).items
    assert {o.order_id for o in failed} == {
        s.order_id for s in states if s.status is OrderStatus.FAILED
    }
    assert read.orders(customer_id="someone-else").items == []

    pages, cursor = [], None
    while True:
        page = read.orders(limit=3, cursor=cursor)
        pages.append([o.order_id for o in page.items])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [o for page in pages for o in page] == [s.order_id for s in reversed(states)]

    first = read.orders(limit=50).items
    middle = first[3].created_at
    newer = read.orders(created_from=middle).items
    older = read.orders(created_to=middle).items
    assert [o.order_id for o in newer + older] == [o.order_id for o in first]
    with pytest.raises(InvalidCursor):
        read.orders(cursor="not-a-cursor")


async def test_product_search_filters_and_sorts(
    client: Client, settings: Settings, workers: Services
) -> None:
    await place_mix(client, settings)
    assert workers.projector is not None
    workers.projector.sync_catalog()
    workers.projector.catch_up()
    read = ReadModel(workers.projector.engine)

    assert [p.sku for p in read.products(q="widget")] == ["SKU-A", "SKU-B"]
    assert [p.sku for p in read.products(category="rare", sort=ProductSort.PRICE)] == [
        "RACE-10",
        "LAST-ONE",
    ]
    assert [
        p.sku for p in read.products(min_price=1000, max_price=2500, sort=ProductSort.PRICE_DESC)
    ] == [
        "SKU-B",
        "SKU-A",
    ]
    everything = read.products(sort=ProductSort.STOCK)
    assert [p.stock_on_hand for p in everything] == sorted(p.stock_on_hand for p in everything)
    assert {p.sku for p in read.products(in_stock=True)} == set(INITIAL_STOCK)
    assert read.products(in_stock=False) == []


async def test_the_projector_catches_up_with_sagas_while_they_run(
    client: Client, settings: Settings, workers: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run in small batches while sagas run, the projector shows each saga's story as it is
    stored, before the last saga ends: four ended orders, and the last one held at its shipment
    (its story so far stored once that step has run past the events window). Then every order
    with its final status."""
    projector, shipping = workers.projector, workers.shipping
    assert projector is not None and shipping is not None
    sagas = [new_saga_input(settings) for _ in range(5)]
    last, gate, create = sagas[-1].order_id, Gate(), shipping.create

    def create_holding_the_last(order_id: str, *args: object) -> object:
        if order_id == last:
            gate.pass_()
        return create(order_id, *args)

    monkeypatch.setattr(shipping, "create", create_holding_the_last)
    handles = [await start(client, saga) for saga in sagas]
    read, seen = ReadModel(projector.engine), 0
    expected = {saga.order_id: OrderStatus.COMPLETED for saga in sagas[:-1]}
    expected[last] = OrderStatus.CREATING_SHIPMENT
    loop = asyncio.get_running_loop()
    try:
        await gate.entered()
        deadline = loop.time() + 30
        while True:
            seen += await asyncio.to_thread(projector.run_once, 2)
            projected = {o.order_id: o.status for o in read.orders(limit=10).items}
            if projected == expected:
                break
            assert loop.time() < deadline, f"projected {projected} while the last saga ran"
            await asyncio.sleep(0.05)
        # Projected before the last saga ended: it is still held at its shipment.
        running = await handles[-1].query(OrderSaga.state)
        assert running.status is OrderStatus.CREATING_SHIPMENT
    finally:
        gate.open()
    states = await asyncio.gather(*(outcome(h) for h in handles))
    seen += projector.catch_up()
    assert seen == workers.event_store.head()  # type: ignore[union-attr]
    assert [s.status for s in states] == [OrderStatus.COMPLETED] * 5
    listed = read.orders(limit=10).items
    assert {o.order_id: o.status for o in listed} == {s.order_id: s.status for s in states}
    assert timedelta(0) <= listed[0].updated_at - listed[0].created_at


def rebuild_projections(settings: Settings) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.readmodel.rebuild"],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_make_rebuild_projections_rebuilds_the_live_tables(
    client: Client, settings: Settings, workers: Services
) -> None:
    """The command a user types (the Makefile target runs this module), on this backend."""
    assert workers.projector is not None
    await place_mix(client, settings)
    workers.projector.catch_up()
    live = tables(workers)
    with Session(workers.projector.engine) as session:  # what a rebuild must throw away
        now = datetime.now(UTC)
        session.add(
            OrderSummary(
                order_id="stale",
                customer_id="c",
                status="PENDING",
                item_count=1,
                created_at=now,
                updated_at=now,
            )
        )
        session.commit()
    rebuilt = await asyncio.to_thread(rebuild_projections, settings)
    assert rebuilt.returncode == 0, rebuilt.stderr
    events = workers.event_store.head()  # type: ignore[union-attr]
    assert re.fullmatch(rf"projections rebuilt from {events} events in [\d.]+ s\n", rebuilt.stdout)
    assert tables(workers) == live


def test_rebuilding_with_the_event_store_down_is_a_clear_error(tmp_path: Path) -> None:
    settings = throwaway_settings(
        tmp_path, event_store_db_url="postgresql+psycopg://nobody@127.0.0.1:1/orders"
    )
    rebuilt = rebuild_projections(settings)
    assert rebuilt.returncode == 1
    assert rebuilt.stderr.startswith("rebuild-projections: a database is unreachable: ")
    assert "Traceback" not in rebuilt.stderr


LITERALLY = [
    ("TEE-100", "100% cotton tee"),
    ("MUG-SNAKE", "snake_case mug"),
    ("POSTER-BS", "back\\slash poster"),
    ("BOOK-EO", "either/or book"),
    ("PLAIN-1", "plain widget"),
]


@pytest.mark.parametrize(
    ("q", "found"),
    [
        ("%", ["TEE-100"]),
        ("0% c", ["TEE-100"]),
        ("_", ["MUG-SNAKE"]),
        ("e_c", ["MUG-SNAKE"]),
        ("\\", ["POSTER-BS"]),
        ("k\\s", ["POSTER-BS"]),
        ("/", ["BOOK-EO"]),  # SQLAlchemy's escape character: itself escaped
        ("%_\\", []),
    ],
)
def test_a_search_finds_wildcard_characters_literally(
    services: Services, q: str, found: list[str]
) -> None:
    """``%`` and ``_`` are LIKE's wildcards, and a search must not be one: "%" found every
    product."""
    assert services.projector is not None
    with Session(services.projector.engine) as session:
        for sku, name in LITERALLY:
            session.add(ProductSearch(sku=sku, name=name, category="misc", price_cents=100))
        session.commit()
    read = ReadModel(services.projector.engine)
    assert [p.sku for p in read.products(q=q)] == found
