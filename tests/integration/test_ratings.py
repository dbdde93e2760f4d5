"""Product ratings on the real databases (SQLite and PostgreSQL): ProductRated events in the
store, their projection into the product search (live and rebuilt alike), the purchase check
the rating command makes against the store, and the read side's migration."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlmodel import Session

from api.routes.products import _append_rating, _bought
from cloudmart.contracts.events import CURRENT_VERSION, Event, EventType, event_id
from cloudmart.contracts.ratings import ProductRated, RatingOutcome, product_stream
from cloudmart.settings import Settings
from services.database import create_db_engine
from services.event_store.store import EventStore
from services.factory import Services
from services.migrations import upgrade
from services.readmodel.models import ProductRatingRow, ProductSearch
from services.readmodel.projector import PROJECTION_TABLES, Projector
from services.readmodel.queries import ProductSort, ReadModel

RATINGS = [  # (customer, sku, stars): later ones supersede the customer's earlier
    ("ann", "SKU-A", 5),
    ("bob", "SKU-A", 2),
    ("ann", "SKU-B", 4),
    ("cat", "RACE-10", 4),
    ("bob", "SKU-A", 4),  # bob changes his mind: SKU-A is (5 + 4) / 2
    ("dan", "SKU-B", 4),
    ("ann", "SKU-A", 3),  # and so does ann: (3 + 4) / 2
]


def rate(store: EventStore, customer: str, sku: str, stars: int) -> RatingOutcome:
    rated = ProductRated(sku=sku, customer_id=customer, stars=stars, comment=f"{stars} stars")
    return _append_rating(store, rated, customer)


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


def test_ratings_are_projected_superseding_and_a_rebuild_gives_the_same_tables(
    services: Services,
) -> None:
    store, projector = services.event_store, services.projector
    assert store is not None and projector is not None
    projector.sync_catalog()
    outcomes = []
    for customer, sku, stars in RATINGS:
        outcomes.append(rate(store, customer, sku, stars))
        projector.catch_up()  # live: an event at a time
    assert outcomes == [RatingOutcome.CREATED] * 4 + [
        RatingOutcome.CHANGED,
        RatingOutcome.CREATED,
        RatingOutcome.CHANGED,
    ]
    assert rate(store, "ann", "SKU-A", 3) is RatingOutcome.UNCHANGED  # nothing stored
    assert [e.sequence for e in store.stream(product_stream("SKU-A"))] == [1, 2, 3, 4]

    read = ReadModel(projector.engine)
    found = {p.sku: (p.rating_average, p.rating_count) for p in read.products()}
    assert found == {
        "SKU-A": (3.5, 2),
        "SKU-B": (4.0, 2),
        "RACE-10": (4.0, 1),
        "LAST-ONE": (None, 0),
    }
    # Highest first; SKU-B and RACE-10 tie at 4.0: more ratings first; unrated last.
    assert [p.sku for p in read.products(sort=ProductSort.RATING)] == [
        "SKU-B",
        "RACE-10",
        "SKU-A",
        "LAST-ONE",
    ]
    assert [p.sku for p in read.products(min_rating=3.6)] == ["RACE-10", "SKU-B"]  # by name
    assert [p.sku for p in read.products(min_rating=3.5)] == ["RACE-10", "SKU-A", "SKU-B"]
    assert [p.sku for p in read.products(min_rating=0)] == ["RACE-10", "SKU-A", "SKU-B"]

    live = tables(projector)
    assert live["product_ratings"]  # the rebuild below has something to get right
    assert projector.rebuild() == store.head()
    assert tables(projector) == live


def order_events(order_id: str, customer: str, skus: list[str], *, completed: bool) -> list[Event]:
    now = datetime.now(UTC)
    story: list[tuple[EventType, dict]] = [
        (
            EventType.ORDER_PLACED,
            {
                "customer_id": customer,
                "items": [{"sku": s, "quantity": 1} for s in skus],
                "country": "DE",
            },
        )
    ]
    if completed:
        story.append((EventType.ORDER_COMPLETED, {"total_cents": 1000}))
    else:
        story.append((EventType.ORDER_FAILED, {"type": "PaymentDeclined", "message": "no"}))
    return [
        Event(
            event_id=event_id(order_id, n),
            aggregate_id=order_id,
            sequence=n,
            event_type=event_type,
            data=data,
            version=CURRENT_VERSION[event_type],
            occurred_at=now,
            user_id=customer,
        )
        for n, (event_type, data) in enumerate(story, start=1)
    ]


def test_only_a_completed_order_with_the_product_lets_a_customer_rate_it(
    services: Services,
) -> None:
    store = services.event_store
    assert store is not None
    store.append(order_events("o-done", "ann", ["SKU-A", "SKU-B"], completed=True))
    store.append(order_events("o-failed", "ann", ["RACE-10"], completed=False))
    store.append(order_events("o-bob", "bob", ["LAST-ONE"], completed=True))

    assert _bought(store.engine, "ann", "SKU-A") and _bought(store.engine, "ann", "SKU-B")
    assert not _bought(store.engine, "ann", "RACE-10")  # her order with it failed
    assert not _bought(store.engine, "ann", "LAST-ONE")  # bob's order, not hers
    assert not _bought(store.engine, "cat", "SKU-A")  # no orders at all
    assert _bought(store.engine, "bob", "LAST-ONE")


def test_the_read_side_migrates_to_ratings_keeping_its_rows(settings: Settings) -> None:
    engine = create_db_engine(settings.db_url("readmodel"), pool_size=1)
    upgrade("readmodel", engine, revision="0001")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO product_search (sku, name, category, price_cents, received,"
                " reserved, sold, stock_on_hand) VALUES ('SKU-A', 'Widget', 'w', 100, 5, 1, 1, 3)"
            )
        )
    upgrade("readmodel", engine)
    with Session(engine) as session:
        row = session.get(ProductSearch, "SKU-A")
        assert row is not None
        assert (row.stock_on_hand, row.rating_count, row.rating_total, row.rating_average) == (
            3,
            0,
            0,
            None,
        )
        session.add(ProductRatingRow(sku="SKU-A", customer_id="ann", stars=5))
        session.commit()
    engine.dispose()
