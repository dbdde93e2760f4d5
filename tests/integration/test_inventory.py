"""Inventory on a real database: atomic reservations, races for the last unit, conservation."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from cloudmart.contracts.failures import OutOfStock, UnknownSku
from cloudmart.contracts.orders import OrderItem
from services.database import transaction
from services.factory import Services
from services.inventory import InventoryService
from services.inventory.catalog import DEMO_CATALOG, ProductSeed
from tests.support import CATALOG, stock


def _inventory(services: Services) -> InventoryService:
    assert services.inventory is not None
    return services.inventory


def test_reservation_takes_every_line_or_none(services: Services) -> None:
    inventory = _inventory(services)
    before = stock(services)
    items = [OrderItem(sku="SKU-A", quantity=5), OrderItem(sku="SKU-B", quantity=51)]
    with pytest.raises(OutOfStock, match="SKU-B: 51 requested, 50 available"):
        inventory.reserve("order-1", items)
    assert stock(services) == before


def test_reservation_prices_come_from_the_catalog(services: Services) -> None:
    items = [OrderItem(sku="SKU-B", quantity=2), OrderItem(sku="SKU-A", quantity=3)]
    reservation = _inventory(services).reserve("order-1", items)
    assert reservation.total_cents == 2 * 2500 + 3 * 1000
    assert {(line.sku, line.unit_price_cents) for line in reservation.lines} == {
        ("SKU-A", 1000),
        ("SKU-B", 2500),
    }
    assert stock(services)["SKU-B"] == (48, 2)


def test_unknown_sku_is_a_business_failure(services: Services) -> None:
    before = stock(services)
    with pytest.raises(UnknownSku, match="NOPE"):
        _inventory(services).reserve("order-1", [OrderItem(sku="NOPE", quantity=1)])
    assert stock(services) == before


def test_many_orders_racing_for_the_last_unit_get_it_once(services: Services) -> None:
    inventory = _inventory(services)

    def attempt(n: int) -> bool:
        try:
            inventory.reserve(f"order-{n}", [OrderItem(sku="LAST-ONE", quantity=1)])
        except OutOfStock:
            return False
        return True

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(attempt, range(40)))
    assert outcomes.count(True) == 1
    assert stock(services)["LAST-ONE"] == (0, 1)


def test_release_then_commit_moves_stock_exactly(services: Services) -> None:
    inventory = _inventory(services)
    inventory.reserve("kept", [OrderItem(sku="SKU-A", quantity=4)])
    inventory.reserve("undone", [OrderItem(sku="SKU-A", quantity=6)])
    assert stock(services)["SKU-A"] == (90, 10)
    inventory.release("undone", "test")
    inventory.commit("kept")
    assert stock(services)["SKU-A"] == (96, 0)
    with transaction(inventory.engine) as session:
        sold = session.execute(text("SELECT sold, received FROM products WHERE sku='SKU-A'")).one()
    assert tuple(sold) == (4, 100)


def test_the_database_refuses_stock_that_is_not_conserved(services: Services) -> None:
    """Even a buggy writer cannot create or lose units: a CHECK constraint guards the sum."""
    with pytest.raises(IntegrityError), transaction(_inventory(services).engine) as session:
        session.execute(text("UPDATE products SET stock_on_hand = stock_on_hand + 1"))


def test_seeding_is_idempotent_and_never_resets_stock(services: Services) -> None:
    inventory = _inventory(services)
    inventory.reserve(str(uuid.uuid4()), [OrderItem(sku="SKU-A", quantity=7)])
    assert inventory.seed(CATALOG) == 0
    assert stock(services)["SKU-A"] == (93, 7)


def test_demo_catalog_has_a_dozen_products_and_one_last_unit() -> None:
    assert len(DEMO_CATALOG) == 12
    assert len({p.category for p in DEMO_CATALOG}) >= 3
    assert [p.stock for p in DEMO_CATALOG].count(1) == 1
    assert sum(p.stock >= 100 for p in DEMO_CATALOG) >= 8
    assert len({p.sku for p in DEMO_CATALOG}) == 12


def test_every_price_is_positive(services: Services) -> None:
    """A free line would make a 0-cent charge, which has nothing to refund."""
    with pytest.raises(ValueError, match="greater than 0"):
        ProductSeed(sku="FREE", name="Free", category="x", price_cents=0, stock=1)
    with pytest.raises(IntegrityError), transaction(_inventory(services).engine) as session:
        session.execute(text("UPDATE products SET price_cents = 0 WHERE sku = 'SKU-A'"))
