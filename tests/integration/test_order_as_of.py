"""An order's past from a real event store (SQLite and PostgreSQL): the stream read back, upcast,
and folded up to a point, as ``GET /orders/{id}/state`` does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from cloudmart.contracts.events import Event, EventType, event_id
from cloudmart.contracts.orders import OrderStatus
from services.database import transaction
from services.event_store.as_of import order_as_of
from services.event_store.models import EventRow
from services.factory import Services

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_an_order_placed_by_an_older_release_folds_upcast_at_any_point(
    services: Services,
) -> None:
    store = services.event_store
    assert store is not None
    with transaction(store.engine) as session:  # OrderPlaced v1: items with ``qty``
        session.execute(
            insert(EventRow).values(
                event_id=event_id("o-old", 1),
                aggregate_id="o-old",
                sequence=1,
                event_type=EventType.ORDER_PLACED,
                data={"customer_id": "c-1", "items": [{"sku": "SKU-A", "qty": 2}]},
                version=1,
                occurred_at=T0,
                user_id="c-1",
                recorded_at=T0,
            )
        )
    store.append(
        [
            Event(
                event_id=event_id("o-old", 2),
                aggregate_id="o-old",
                sequence=2,
                event_type=EventType.ORDER_CANCELLED,
                data={"reason": "changed my mind"},
                version=1,
                occurred_at=T0 + timedelta(minutes=5),
                user_id="c-1",
            )
        ]
    )
    stream = store.stream("o-old")
    # The times come back from the database as they went in (aware, UTC): comparable with
    # the ``as_of`` a client sends, on either backend.
    placed = order_as_of("o-old", stream, T0 + timedelta(minutes=4, seconds=59))
    assert placed.state is not None
    assert (placed.sequence, placed.occurred_at, placed.state.status) == (
        1,
        T0,
        OrderStatus.PENDING,
    )
    assert [(i.sku, i.quantity) for i in placed.state.items] == [("SKU-A", 2)]
    cancelled = order_as_of("o-old", stream, None)
    assert cancelled.state is not None
    assert (cancelled.state.status, cancelled.state.cancel_reason) == (
        OrderStatus.CANCELLED,
        "changed my mind",
    )
    assert cancelled.state.items == placed.state.items
