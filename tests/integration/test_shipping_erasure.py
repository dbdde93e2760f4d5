"""Erasure reaches shipping: once a customer is erased, shipping's own follower of the events
blanks their shipments' addresses (keeping the country), leaves everyone else's alone, catches
a shipment created after the erasure, and changes nothing when run again. Real databases
(SQLite and PostgreSQL), the real customers service erasing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from cloudmart.contracts.customers import RegisterCustomer
from cloudmart.contracts.events import Event, EventType, event_id
from cloudmart.contracts.orders import ShippingAddress
from cloudmart.settings import Settings
from services.event_store.store import EventStore
from services.factory import Services, build_shipping, build_shipping_eraser
from services.shipping.erasure import AddressEraser
from services.shipping.models import ErasedCustomer, OrderCustomer
from services.shipping.service import ShippingService

PERSONAL = ("Zelda Quux", "Wunderweg 77", "Quuxhausen", "D-99887")
"""The erased customer's name, street, city and postcode: not one may be left in shipments."""


def address(name: str, street: str, city: str, postcode: str) -> ShippingAddress:
    return ShippingAddress(
        name=name, line1=street, line2="Hinterhaus", city=city, postal_code=postcode, country="DE"
    )


ZELDA = address(*PERSONAL)
OTTO = address("Otto Normal", "Lindenallee 3", "Berlin", "10115")


def place(store: EventStore, order_id: str, customer_id: str) -> None:
    """The order's first event, as the saga writes it: it names the customer."""
    store.append(
        [
            Event(
                event_id=event_id(order_id, 1),
                aggregate_id=order_id,
                sequence=1,
                event_type=EventType.ORDER_PLACED,
                data={"customer_id": customer_id, "items": [], "country": "DE"},
                version=2,
                occurred_at=datetime.now(UTC),
                user_id=customer_id,
            )
        ]
    )


def shipments(shipping: ShippingService) -> dict[str, dict[str, Any]]:
    """Every row of the shipments table, as the database holds it (no model in between)."""
    with shipping.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM shipments ORDER BY order_id")).mappings()
        found = {row["order_id"]: dict(row) for row in rows}
    for row in found.values():
        if isinstance(row["address"], str):  # SQLite hands JSON back as text
            row["address"] = json.loads(row["address"])
    return found


def table_text(shipping: ShippingService) -> str:
    """The shipments table, every column of every row, as one text to search."""
    return json.dumps(shipments(shipping), default=str)


@pytest.fixture
def eraser(settings: Settings, services: Services) -> Any:
    """Built as the worker builds it (its own engine on shipping's database)."""
    eraser = build_shipping_eraser(settings)
    yield eraser
    eraser.engine.dispose()
    eraser.store.engine.dispose()


def test_an_erased_customers_addresses_are_blanked_and_no_one_elses(
    services: Services, eraser: AddressEraser
) -> None:
    customers, shipping, store = services.customers, services.shipping, services.event_store
    assert customers is not None and shipping is not None and store is not None
    zelda = customers.register(RegisterCustomer(name=PERSONAL[0], email="zelda@example.org"))
    otto = customers.register(RegisterCustomer(name="Otto Normal", email="otto@example.org"))
    for order_id, customer, to in (
        ("o-zelda-1", zelda, ZELDA),
        ("o-zelda-2", zelda, ZELDA),
        ("o-otto-1", otto, OTTO),
    ):
        place(store, order_id, customer.customer_id)
        shipping.create(order_id, to)
    place(store, "o-zelda-late", zelda.customer_id)  # placed before the erasure, shipped after
    shipping.cancel("o-zelda-2", "returned")
    before = shipments(shipping)
    assert all(word in table_text(shipping) for word in PERSONAL)

    assert eraser.catch_up() > 0
    assert shipments(shipping) == before  # no one erased yet: nothing changes

    customers.erase(zelda.customer_id, by="operator")
    eraser.catch_up()
    after = shipments(shipping)
    for order_id in ("o-zelda-1", "o-zelda-2"):
        assert after[order_id]["address"] == {"country": "DE", "erased": True}
        assert after[order_id]["country"] == "DE"
        unchanged = ("status", "tracking_number", "reason", "created_at")
        assert {k: after[order_id][k] for k in unchanged} == {
            k: before[order_id][k] for k in unchanged
        }
    assert after["o-zelda-2"]["status"] == "CANCELLED"
    assert after["o-otto-1"] == before["o-otto-1"]  # the other customer's: intact
    assert not any(word in table_text(shipping) for word in PERSONAL)
    assert "Otto Normal" in table_text(shipping)

    # A shipment created after the erasure, for an order placed before it: the next run.
    shipping.create("o-zelda-late", ZELDA)
    place(store, "o-otto-2", otto.customer_id)  # any later event makes a next batch
    eraser.catch_up()
    late = shipments(shipping)["o-zelda-late"]
    assert late["address"] == {"country": "DE", "erased": True}
    assert late["status"] == "CREATED" and late["tracking_number"]
    assert not any(word in table_text(shipping) for word in PERSONAL)

    # Running again (caught up, or over the same events from the start) changes nothing.
    settled = shipments(shipping)
    assert eraser.run_once() == 0
    again = AddressEraser(eraser.engine, eraser.store)
    with eraser.engine.begin() as connection:
        connection.execute(text("UPDATE erasure_subscription SET position = 0"))
    assert again.catch_up() > 0
    assert shipments(shipping) == settled
    with eraser.engine.connect() as connection:
        erased = connection.execute(text("SELECT customer_id FROM erased_customers")).scalars()
        assert list(erased) == [zelda.customer_id]
        orders = connection.execute(text("SELECT count(*) FROM order_customers")).scalar()
        assert orders == 5


def test_a_batch_and_its_position_are_one_transaction(
    services: Services, eraser: AddressEraser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that fails part way leaves nothing behind: no position, no learned rows."""
    store, shipping = services.event_store, services.shipping
    assert store is not None and shipping is not None
    place(store, "o-1", "c-1")
    shipping.create("o-1", ZELDA)

    def broken(session: object) -> int:
        raise RuntimeError("the database went away")

    monkeypatch.setattr("services.shipping.erasure._blank_due", broken)
    with pytest.raises(RuntimeError):
        eraser.run_once()
    assert eraser.position() == 0
    with eraser.engine.connect() as connection:
        for table in (OrderCustomer.__tablename__, ErasedCustomer.__tablename__):
            assert connection.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 0
    monkeypatch.undo()
    assert eraser.run_once() == 1 and eraser.position() == store.head()


@pytest.mark.parametrize("backend", ["sqlite"])  # PostgreSQL keeps old row versions until VACUUM
def test_on_sqlite_no_copy_of_an_erased_address_is_left_in_the_files(
    settings: Settings, services: Services, eraser: AddressEraser
) -> None:
    """Not only the row: the database file and its write-ahead log hold no old copy either, even
    where SQLite is built without secure deletion (each connection starts with it off here, as
    upstream's default has it, before the builders' own setting)."""
    customers, store = services.customers, services.event_store
    assert customers is not None and store is not None
    shipping = build_shipping(settings)  # as the worker builds it: a fresh engine
    for engine in (shipping.engine, eraser.engine):
        event.listen(engine, "connect", insecure_delete, insert=True)
    try:
        zelda = customers.register(RegisterCustomer(name=PERSONAL[0], email="zelda@example.org"))
        for n in range(20):
            place(store, f"o-{n}", zelda.customer_id)
            shipping.create(f"o-{n}", ZELDA)
        eraser.catch_up()
        files = sorted(Path(settings.data_dir).glob("shipping.db*"))
        assert any(word.encode() in f.read_bytes() for f in files for word in PERSONAL)

        customers.erase(zelda.customer_id, by="operator")
        eraser.catch_up()
        files = sorted(Path(settings.data_dir).glob("shipping.db*"))
        left = [(f.name, w) for f in files for w in PERSONAL if w.encode() in f.read_bytes()]
        assert left == []
    finally:
        shipping.engine.dispose()


def insecure_delete(dbapi_connection: Any, _record: object) -> None:
    dbapi_connection.execute("PRAGMA secure_delete=OFF")
