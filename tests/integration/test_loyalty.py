"""Loyalty, reacting to order events on its own: points awarded once, taken back on a refund,
snapshots that change nothing but the cost of loading."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select
from sqlmodel import Session

from cloudmart.contracts.events import Event, EventType, event_id
from services.database import transaction
from services.event_store.store import EventStore
from services.factory import Services
from services.loyalty.account import POINTS_AWARDED
from services.loyalty.models import AccountEvent, AccountSnapshot, Subscription
from services.loyalty.service import LoyaltyService

START = datetime(2026, 11, 1, tzinfo=UTC)


class Orders:
    """Writes order events the way the saga does, for one customer's orders."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.count = 0

    def completed(self, customer: str, total_cents: int) -> str:
        self.count += 1
        order = f"order-{self.count}"
        self.store.append(
            [
                self._event(
                    order, 1, EventType.ORDER_PLACED, customer_id=customer, items=[], country="NL"
                ),
                self._event(order, 2, EventType.ORDER_COMPLETED, total_cents=total_cents),
            ]
        )
        return order

    def refunded_later(self, order: str, amount_cents: int) -> None:
        self.store.append(
            [
                self._event(
                    order,
                    3,
                    EventType.PAYMENT_REFUNDED,
                    outcome="UNDONE",
                    amount_cents=amount_cents,
                    lines=[],
                )
            ]
        )

    def _event(self, order: str, sequence: int, event_type: str, **data: object) -> Event:
        return Event(
            event_id=event_id(order, sequence),
            aggregate_id=order,
            sequence=sequence,
            event_type=event_type,
            data=data,
            version=2 if event_type == EventType.ORDER_PLACED else 1,
            occurred_at=START + timedelta(minutes=self.count),
            user_id="system",
        )


@pytest.fixture
def orders(services: Services) -> Orders:
    assert services.event_store is not None
    return Orders(services.event_store)


@pytest.fixture
def loyalty(services: Services) -> LoyaltyService:
    assert services.loyalty is not None
    return services.loyalty


def test_completed_orders_earn_a_point_per_unit_and_a_later_refund_takes_them_back(
    orders: Orders, loyalty: LoyaltyService
) -> None:
    first = orders.completed("c-1", 12_345)
    orders.completed("c-1", 99)  # less than a unit: no points
    orders.completed("c-2", 5_000)
    loyalty.catch_up()
    assert loyalty.account("c-1").points == 123
    assert loyalty.account("c-2").points == 50

    orders.refunded_later(first, 12_345)
    loyalty.catch_up()
    account = loyalty.statement("c-1")
    assert account.points == 0
    assert [(h.event_type, h.points, h.order_id) for h in account.history] == [
        ("PointsAwarded", 123, first),
        ("PointsRevoked", 123, first),
    ]


def test_it_catches_up_after_being_stopped_and_never_awards_twice(
    orders: Orders, loyalty: LoyaltyService
) -> None:
    for _ in range(7):
        orders.completed("c-1", 1_000)  # while loyalty is not running
    assert loyalty.position() == 0
    loyalty.catch_up()
    assert loyalty.account("c-1").points == 70
    assert loyalty.position() == orders.store.head()

    with transaction(loyalty.engine) as session:  # as if it lost its position and read again
        session.get(Subscription, "order-events").position = 0  # type: ignore[union-attr]
    loyalty.catch_up()
    assert loyalty.account("c-1").points == 70


def test_a_snapshot_plus_later_events_equals_a_full_replay_even_across_an_upcast(
    services: Services, orders: Orders
) -> None:
    assert services.loyalty is not None
    loyalty = LoyaltyService(services.loyalty.engine, services.loyalty.store, snapshot_every=5)
    # Seven awards written by an older release, at version 1 ("order", no "reason").
    with transaction(loyalty.engine) as session:
        for n in range(1, 8):
            session.execute(
                insert(AccountEvent).values(
                    event_id=f"00000000-0000-4000-8000-{n:012d}",
                    account_id="c-1",
                    sequence=n,
                    event_type=POINTS_AWARDED,
                    data={"points": 10, "order": f"old-{n}"},
                    version=1,
                    occurred_at=START,
                )
            )
    for _ in range(16):
        orders.completed("c-1", 100)
    loyalty.catch_up()  # events 8..23: snapshots at 10, 15 and 20, made from upcast events

    with Session(loyalty.engine) as session:
        snapshots = session.scalars(select(AccountSnapshot.sequence)).all()
    assert sorted(snapshots) == [10, 15, 20]
    from_snapshot = loyalty.account("c-1")
    assert from_snapshot == loyalty.replay("c-1")
    assert from_snapshot.points == 7 * 10 + 16 and from_snapshot.version == 23
    assert from_snapshot.awarded == 7 * 10 + 16 and from_snapshot.revoked == 0
    history = loyalty.statement("c-1").history
    assert history[0].order_id == "old-1"  # upcast: "order" became "order_id"
    assert history[0].reason == "order completed"


def test_the_statement_shows_the_latest_entries_oldest_first(
    orders: Orders, loyalty: LoyaltyService
) -> None:
    placed = [orders.completed("c-1", 100 * n) for n in range(1, 8)]
    loyalty.catch_up()
    statement = loyalty.statement("c-1", last=3)
    assert statement.points == sum(range(1, 8))  # the balance counts every event
    assert [h.order_id for h in statement.history] == placed[-3:]
    assert [h.points for h in statement.history] == [5, 6, 7]


def test_a_snapshot_of_an_older_state_shape_is_ignored_not_misread(
    orders: Orders, loyalty: LoyaltyService
) -> None:
    for _ in range(3):
        orders.completed("c-1", 1_000)
    loyalty.catch_up()
    with transaction(loyalty.engine) as session:  # a release that kept the whole history
        session.add(
            AccountSnapshot(
                account_id="c-1",
                sequence=3,
                state={"customer_id": "c-1", "points": 999, "history": [], "version": 3},
                state_version=1,
            )
        )
    assert loyalty.account("c-1") == loyalty.replay("c-1")
    assert loyalty.account("c-1").points == 30
