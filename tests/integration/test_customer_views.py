"""The customer projections on the real databases (SQLite and PostgreSQL): customers' and
orders' events in the store, projected into UserView and UserStatistics live and by a rebuild
(the same tables), profiles opened with the customers service's own sealing, and erasure."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlmodel import Session

from cloudmart.contracts.customers import (
    Profile,
    RegisterCustomer,
    UpdateProfile,
    customer_stream,
)
from cloudmart.contracts.events import CURRENT_VERSION, Event, EventType, event_id
from cloudmart.settings import Settings
from services.customers.sealing import new_key, open_with, seal_with
from services.database import create_db_engine
from services.event_store.store import EventStore
from services.factory import Services
from services.migrations import upgrade
from services.readmodel.models import UserView
from services.readmodel.projector import PROJECTION_TABLES, Projector
from services.readmodel.queries import ReadModel

DAY = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
PRICES = {"SKU-A": 1000, "SKU-B": 2500, "RACE-10": 500, "LAST-ONE": 9900}
"""tests/support.py's catalog: SKU-A and SKU-B are widgets, RACE-10 and LAST-ONE rare."""


class Keys:
    """A profile reader as the projector takes one, with the customers service's own crypto
    over keys held here: ``destroy`` is erasure."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}

    def seal(self, customer_id: str, profile: Profile) -> str:
        return seal_with(self.keys.setdefault(customer_id, new_key()), customer_id, profile)

    def open(self, customer_id: str, sealed: str) -> Profile | None:
        key = self.keys.get(customer_id)
        return None if key is None else open_with(key, customer_id, sealed)

    def destroy(self, customer_id: str) -> None:
        del self.keys[customer_id]


class Story:
    """Appends customers' and orders' events to the store, each stream at its next sequence."""

    def __init__(self, store: EventStore, keys: Keys) -> None:
        self.store, self.keys = store, keys
        self.sequences: dict[str, int] = {}

    def append(self, stream: str, event_type: EventType, at: datetime, **data: Any) -> None:
        sequence = self.sequences[stream] = self.sequences.get(stream, 0) + 1
        self.store.append(
            [
                Event(
                    event_id=event_id(stream, sequence),
                    aggregate_id=stream,
                    sequence=sequence,
                    event_type=event_type,
                    data=data,
                    version=CURRENT_VERSION[event_type],
                    occurred_at=at,
                    user_id="test",
                )
            ]
        )

    def register(self, customer: str, name: str, at: datetime, *, guest: bool = False) -> None:
        personal = self.keys.seal(customer, Profile(name=name, email=f"{customer}@example.com"))
        self.append(
            customer_stream(customer),
            EventType.USER_CREATED,
            at,
            customer_id=customer,
            guest=guest,
            order_id=None,
            personal=personal,
        )

    def rename(self, customer: str, name: str, at: datetime) -> None:
        personal = self.keys.seal(customer, Profile(name=name, email=f"{customer}@example.com"))
        self.append(
            customer_stream(customer),
            EventType.PROFILE_UPDATED,
            at,
            customer_id=customer,
            fields=["name"],
            personal=personal,
        )

    def order(
        self, order_id: str, customer: str, lines: dict[str, int], at: datetime, end: str
    ) -> None:
        """An order's story to its ``end``: completed, failed, or left in flight (reserved)."""
        items = [{"sku": sku, "quantity": n} for sku, n in lines.items()]
        priced = [{**item, "unit_price_cents": PRICES[item["sku"]]} for item in items]
        total = sum(line["quantity"] * line["unit_price_cents"] for line in priced)
        self.append(
            order_id,
            EventType.ORDER_PLACED,
            at,
            customer_id=customer,
            items=items,
            country="DE",
        )
        # The saga's first step (a newer saga's event): the customer projections ignore it.
        self.append(
            order_id,
            EventType.CUSTOMER_CHECKED,
            at,
            customer_id=customer,
            registered=True,
            created=False,
        )
        self.append(order_id, EventType.INVENTORY_RESERVED, at, lines=priced, total_cents=total)
        if end == "completed":
            self.append(order_id, EventType.PAYMENT_CHARGED, at, amount_cents=total)
            self.append(order_id, EventType.INVENTORY_COMMITTED, at, lines=priced)
            self.append(order_id, EventType.ORDER_COMPLETED, at, total_cents=total)
        elif end == "failed":
            self.append(
                order_id, EventType.PAYMENT_DECLINED, at, type="PaymentDeclined", message="no"
            )
            self.append(order_id, EventType.COMPENSATION_STARTED, at, reason="PaymentDeclined")
            self.append(
                order_id,
                EventType.INVENTORY_RELEASED,
                at,
                outcome="UNDONE",
                lines=priced,
                amount_cents=0,
            )
            self.append(order_id, EventType.ORDER_FAILED, at, type="PaymentDeclined", message="no")


def tables(projector: Projector) -> dict[str, list[dict]]:
    with Session(projector.engine) as session:
        return {
            table.__tablename__: [
                row.model_dump()
                for row in session.scalars(
                    select(table).order_by(*table.__table__.primary_key.columns)
                )
            ]
            for table in PROJECTION_TABLES
        }


@pytest.fixture
def projector(services: Services) -> Projector:
    """The services' projector (its store, its database, inventory's catalog), with a reader."""
    assert services.projector is not None
    projector = services.projector
    projector.profiles = Keys()
    projector.sync_catalog()
    return projector


def story(projector: Projector) -> tuple[Story, Keys]:
    assert isinstance(projector.profiles, Keys)
    return Story(projector.store, projector.profiles), projector.profiles


def at(days: float) -> datetime:
    return DAY + timedelta(days=days)


def test_a_customer_and_their_orders_make_one_row(projector: Projector, services: Services) -> None:
    events, _ = story(projector)
    events.register("ann", "Ann Smith", at(0))
    projector.catch_up()
    events.order("o-1", "ann", {"SKU-A": 2}, at(1), "completed")  # 2000: 20 points
    events.order("o-2", "ann", {"RACE-10": 3, "SKU-B": 1}, at(2), "completed")  # 4000
    events.order("o-3", "ann", {"LAST-ONE": 1}, at(3), "failed")
    events.rename("ann", "Ann Jones", at(3.5))
    events.order("o-4", "ann", {"RACE-10": 2}, at(4), "in flight")
    projector.catch_up()

    view = ReadModel(projector.engine).customer("ann")
    assert view is not None
    assert (view.registered, view.guest, view.status, view.erased) == (True, False, "ACTIVE", False)
    assert view.profile is not None
    assert (view.profile.name, view.profile.email) == ("Ann Jones", "ann@example.com")
    assert view.orders == 4
    assert view.orders_by_status == {"COMPLETED": 2, "FAILED": 1, "CHARGING_PAYMENT": 1}
    assert (view.completed_orders, view.lifetime_spend_cents) == (2, 6000)
    assert view.last_order is not None
    assert (view.last_order.order_id, view.last_order.status) == ("o-4", "CHARGING_PAYMENT")
    assert view.last_order.placed_at == at(4)
    # Units bought in completed orders: rare 3 (RACE-10), widgets 3 (2 SKU-A, 1 SKU-B); a tie,
    # by name. The failed and the unfinished orders bought nothing.
    assert view.favourite_categories == ["rare", "widgets"]
    assert (view.first_seen_at, view.updated_at) == (at(0), at(4))

    # Loyalty's own service, over the same events, awards the same points.
    assert services.loyalty is not None
    services.loyalty.catch_up()
    assert view.loyalty_points == services.loyalty.account("ann").points == 60


def test_a_refund_after_completion_takes_back_the_points_as_loyalty_does(
    projector: Projector, services: Services
) -> None:
    events, _ = story(projector)
    events.order("o-r", "bob", {"SKU-B": 2}, at(0), "completed")  # 5000: 50 points
    events.order("o-k", "bob", {"SKU-A": 1}, at(1), "completed")  # 1000: 10 points
    for _ in range(2):  # a second refund takes nothing more
        events.append(
            "o-r", EventType.PAYMENT_REFUNDED, at(2), outcome="UNDONE", lines=[], amount_cents=5000
        )
    projector.catch_up()
    assert services.loyalty is not None
    services.loyalty.catch_up()
    view = ReadModel(projector.engine).customer("bob")
    assert view is not None
    assert view.loyalty_points == services.loyalty.account("bob").points == 10


def test_customers_never_registered_guests_and_closed_accounts(projector: Projector) -> None:
    events, _ = story(projector)
    events.order("o-b", "bob", {"SKU-A": 1}, at(0), "completed")  # only ever ordered
    events.register("cat", "Cat Guest", at(1), guest=True)
    events.order("o-c", "cat", {"SKU-A": 1}, at(1), "failed")
    events.append(
        customer_stream("cat"),
        EventType.USER_CANCELLED,
        at(1),
        customer_id="cat",
        order_id="o-c",
        reason="the order did not go through",
    )
    events.register("dan", "Dan Closed", at(2))
    events.append(
        customer_stream("dan"), EventType.ACCOUNT_CLOSED, at(3), customer_id="dan", reason="bye"
    )
    projector.catch_up()
    read = ReadModel(projector.engine)

    bob = read.customer("bob")
    assert bob is not None
    assert (bob.registered, bob.status, bob.profile, bob.erased) == (False, None, None, False)
    assert (bob.orders, bob.completed_orders, bob.favourite_categories) == (1, 1, ["widgets"])
    cat = read.customer("cat")
    assert cat is not None
    assert (cat.registered, cat.guest, cat.status) == (True, True, "CANCELLED")
    assert cat.profile is not None and cat.profile.name == "Cat Guest"
    assert (cat.orders_by_status, cat.favourite_categories) == ({"FAILED": 1}, [])
    dan = read.customer("dan")
    assert dan is not None and (dan.status, dan.orders, dan.last_order) == ("CLOSED", 0, None)
    assert read.customer("nobody") is None


def test_without_a_reader_no_profile_is_shown(projector: Projector) -> None:
    events, _ = story(projector)
    events.register("ann", "Ann Smith", at(0))
    projector.profiles = None  # a deployment without the customers service's keys
    projector.catch_up()
    view = ReadModel(projector.engine).customer("ann")
    assert view is not None
    assert (view.registered, view.profile, view.erased) == (True, None, False)


def test_a_profile_that_does_not_open_shows_erased_and_holds_nothing_up(
    projector: Projector,
) -> None:
    events, keys = story(projector)
    events.register("ann", "Ann", at(0))
    events.append(
        customer_stream("ann"),
        EventType.PROFILE_UPDATED,
        at(1),
        customer_id="ann",
        fields=["name"],
        personal=keys.seal("bob", Profile(name="Bob", email="bob@example.com")),  # bob's key
    )
    events.order("o-1", "ann", {"SKU-A": 1}, at(2), "completed")
    assert projector.catch_up() == projector.store.head()
    view = ReadModel(projector.engine).customer("ann")
    assert view is not None
    assert (view.profile, view.erased, view.completed_orders) == (None, True, 1)


def test_the_statistics(projector: Projector) -> None:
    events, _ = story(projector)
    events.order("o-old", "old", {"SKU-A": 1}, at(0), "completed")  # 1000, 40 days before
    events.register("ann", "Ann", at(10))
    events.order("o-a1", "ann", {"SKU-A": 2}, at(20), "completed")  # 2000
    events.order("o-a2", "ann", {"SKU-B": 1}, at(39), "completed")  # 2500
    events.register("bea", "Bea", at(39))
    events.order("o-b1", "bea", {"RACE-10": 1}, at(40), "completed")  # 500
    events.order("o-b2", "bea", {"RACE-10": 1}, at(40), "failed")
    events.order("o-c1", "cid", {"SKU-A": 1}, at(40), "in flight")  # unregistered, active
    projector.catch_up()

    stats = ReadModel(projector.engine).customer_stats(days=3)
    assert stats.as_of == date(2026, 12, 11)  # day 40: the data's latest
    assert (stats.customers, stats.registered) == (4, 2)
    assert [(d.day.day, d.customers) for d in stats.new_customers] == [(9, 0), (10, 1), (11, 1)]
    # Within the 30 days ending on day 40: ann (39), bea and cid (40); old ordered on day 0.
    assert (stats.active_window_days, stats.active_customers) == (30, 3)
    # Buyers: old, ann (2 completed), bea; repeat: ann alone.
    assert (stats.buyers, stats.repeat_buyers) == (3, 1)
    assert stats.repeat_purchase_rate == pytest.approx(1 / 3)
    assert stats.completed_orders == 4
    assert stats.average_order_value_cents == 1500  # (1000 + 2000 + 2500 + 500) / 4

    # An order stored late (a long saga stores its OrderPlaced at its end) but placed before
    # ann's latest: not her last order, and the active customers stay as they were.
    events.order("o-a0", "ann", {"SKU-A": 1}, at(5), "in flight")
    projector.catch_up()
    ann = ReadModel(projector.engine).customer("ann")
    assert ann is not None and ann.last_order is not None
    assert (ann.last_order.order_id, ann.last_order.placed_at) == ("o-a2", at(39))
    assert ReadModel(projector.engine).customer_stats().active_customers == 3

    # A customer's later order moves them into the window; the older order out of it.
    events.order("o-old2", "old", {"SKU-A": 1}, at(41), "failed")
    projector.catch_up()
    later = ReadModel(projector.engine).customer_stats()
    assert later.as_of == date(2026, 12, 12)
    assert later.active_customers == 4
    assert len(later.new_customers) == 30 and sum(d.customers for d in later.new_customers) == 2


def test_before_any_event_the_statistics_are_empty(projector: Projector) -> None:
    stats = ReadModel(projector.engine).customer_stats()
    assert (stats.as_of, stats.customers, stats.new_customers, stats.active_customers) == (
        None,
        0,
        [],
        0,
    )
    assert (stats.repeat_purchase_rate, stats.average_order_value_cents) == (None, None)


def test_erasure_blanks_the_profile_everywhere_in_the_read_side(
    projector: Projector, settings: Settings
) -> None:
    events, keys = story(projector)
    events.register("eve", "Eve Secret", at(0))
    events.rename("eve", "Eve Hidden", at(1))
    events.order("o-e", "eve", {"SKU-A": 1}, at(2), "completed")
    projector.catch_up()
    view = ReadModel(projector.engine).customer("eve")
    assert view is not None and view.profile is not None

    # The event blanks the profile by itself, before the key is gone (whichever order the
    # customers service does the two in); a later event's profile, still readable, stays hidden.
    events.append(customer_stream("eve"), EventType.CUSTOMER_ERASED, at(3), customer_id="eve")
    projector.catch_up()
    events.rename("eve", "Eve Again", at(3.5))
    projector.catch_up()
    keys.destroy("eve")
    view = ReadModel(projector.engine).customer("eve")
    assert view is not None
    assert (view.profile, view.erased) == (None, True)
    assert (view.orders, view.lifetime_spend_cents) == (1, 1000)  # the money stays
    for secret in ("Eve Secret", "Eve Hidden", "Eve Again", "eve@example.com"):
        assert secret not in everything_stored(projector), secret
        assert secret.encode() not in database_files(settings), secret


def everything_stored(projector: Projector) -> str:
    """Every row of every read side table, as text."""
    with Session(projector.engine) as session:
        return repr(tables(projector)) + repr(
            [
                session.execute(text(f"SELECT * FROM {table.__tablename__}")).all()
                for table in PROJECTION_TABLES
            ]
        )


def database_files(settings: Settings) -> bytes:
    """SQLite: the read side's database file and its write-ahead log, byte for byte (a blanked
    value must not linger in a free page). PostgreSQL's files are the server's, not ours."""
    url = settings.db_url("readmodel")
    if not url.startswith("sqlite"):
        return b""
    path = Path(url.removeprefix("sqlite:///"))
    files = [path, path.with_name(path.name + "-wal")]
    return b"".join(f.read_bytes() for f in files if f.exists())


def test_the_customers_service_registers_and_erases_and_the_view_follows(
    services: Services,
) -> None:
    """The projector as the worker builds it (services/factory.py), opening the profiles the
    customers service sealed with its own keys: shown, changed, then erased."""
    customers, projector = services.customers, services.projector
    assert customers is not None and projector is not None
    projector.sync_catalog()
    ann = customers.register(RegisterCustomer(name="Ann Real", email="ann.real@example.com"))
    customers.update_profile(
        ann.customer_id, UpdateProfile(name="Ann Renamed"), expected_version=None, by="test"
    )
    projector.catch_up()
    read = ReadModel(projector.engine)
    view = read.customer(ann.customer_id)
    assert view is not None and view.profile is not None
    assert (view.profile.name, view.profile.email) == ("Ann Renamed", "ann.real@example.com")
    assert (view.registered, view.guest, view.status) == (True, False, "ACTIVE")

    customers.erase(ann.customer_id, by="operator")
    projector.catch_up()
    view = read.customer(ann.customer_id)
    assert view is not None and (view.profile, view.erased) == (None, True)
    live = tables(projector)
    projector.rebuild()  # the key is gone: the rebuild cannot open the profile either
    assert tables(projector) == live
    assert "ann.real@example.com" not in repr(live)


def test_a_rebuild_gives_the_live_tables_exactly(projector: Projector) -> None:
    """Live (a catch-up after every few events) and rebuilt in one transaction: the same rows,
    including a profile erased since (the rebuild cannot open it: the key is gone)."""
    events, keys = story(projector)
    events.register("ann", "Ann", at(0))
    projector.catch_up()
    events.order("o-1", "ann", {"SKU-A": 2, "RACE-10": 1}, at(1), "completed")
    events.order("o-2", "bob", {"SKU-B": 1}, at(1), "failed")
    projector.catch_up()
    events.register("eve", "Eve", at(2))
    events.order("o-3", "eve", {"SKU-A": 1}, at(3), "completed")
    events.order("o-4", "ann", {"RACE-10": 4}, at(33), "completed")
    events.rename("ann", "Ann B", at(34))
    projector.catch_up()
    keys.destroy("eve")
    events.append(customer_stream("eve"), EventType.CUSTOMER_ERASED, at(35), customer_id="eve")
    events.order("o-5", "bob", {"SKU-A": 1}, at(35), "in flight")
    projector.catch_up()

    live = tables(projector)
    assert live["user_view"] and live["customer_stats"] and live["customer_days"]
    assert projector.rebuild() == projector.store.head()
    assert tables(projector) == live


def test_the_read_side_migrates_to_the_customer_views_keeping_its_rows(
    settings: Settings,
) -> None:
    engine = create_db_engine(settings.db_url("readmodel"), pool_size=1)
    upgrade("readmodel", engine, revision="0002")
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO checkpoints (name, position) VALUES ('projections', 7)")
        )
    upgrade("readmodel", engine)
    with Session(engine) as session:
        assert session.scalars(select(UserView)).all() == []
        assert session.execute(text("SELECT position FROM checkpoints")).scalar() == 7
    engine.dispose()
