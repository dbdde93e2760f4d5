"""The activity store on the real databases (SQLite and PostgreSQL): each action stored once
however often it is recorded, a cancel by an anonymous caller under the order's customer, the
timeline's pages and filters; and recommendations from the stores as they are."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from cloudmart.contracts.events import Event, EventType, event_id
from cloudmart.settings import Settings
from services.activity.actions import Recorded
from services.activity.models import ActivityType
from services.activity.signals import recommend
from services.activity.store import ActivityStore, InvalidCursor
from services.event_store.store import EventStore
from services.factory import Services, build_activity, prepare
from services.readmodel.queries import ReadModel

START = datetime(2026, 12, 1, 9, tzinfo=UTC)


@pytest.fixture
def store(settings: Settings) -> Iterator[ActivityStore]:
    activity = build_activity(settings)
    prepare(activity, settings)
    yield activity
    activity.engine.dispose()


def did(
    customer: str | None,
    kind: ActivityType,
    minute: int,
    *,
    subject: str | None = None,
    key: str | None = None,
    **data: object,
) -> Recorded:
    return Recorded(
        customer_id=customer,
        type=kind,
        subject=subject,
        data=data,
        occurred_at=START + timedelta(minutes=minute),
        request_id=f"req-{minute}",
        key=key or f"request:req-{minute}",
    )


def test_an_action_recorded_again_is_stored_once(store: ActivityStore) -> None:
    placed = did("c-1", ActivityType.ORDER_PLACED, 1, subject="o-1", key="natural:o-1")
    assert store.record([placed, placed]) == 1  # twice in a batch
    assert store.record([placed]) == 0  # and again later (a journal stored twice)
    # The same key for another customer or another kind of action is another action.
    assert store.record([placed.model_copy(update={"customer_id": "c-2"})]) == 1
    assert store.record([placed.model_copy(update={"type": ActivityType.ORDER_CANCELLED})]) == 1
    assert len(store.timeline("c-1").items) == 2


def test_an_anonymous_cancel_is_stored_under_the_orders_customer(store: ActivityStore) -> None:
    store.record([did("c-1", ActivityType.ORDER_PLACED, 1, subject="o-1", key="natural:o-1")])
    cancelled = did(None, ActivityType.ORDER_CANCELLED, 2, subject="o-1", key="natural:o-1")
    unknown = did(None, ActivityType.ORDER_CANCELLED, 3, subject="o-9", key="natural:o-9")
    # In one batch with its order_placed, too.
    placed_now = did("c-2", ActivityType.ORDER_PLACED, 4, subject="o-2", key="natural:o-2")
    cancelled_now = did(None, ActivityType.ORDER_CANCELLED, 5, subject="o-2", key="natural:o-2")
    assert store.record([cancelled, unknown, placed_now, cancelled_now]) == 3
    assert [(e.type, e.subject) for e in store.timeline("c-1").items] == [
        (ActivityType.ORDER_CANCELLED, "o-1"),
        (ActivityType.ORDER_PLACED, "o-1"),
    ]
    assert [e.type for e in store.timeline("c-2").items] == [
        ActivityType.ORDER_CANCELLED,
        ActivityType.ORDER_PLACED,
    ]


def test_the_timeline_pages_newest_first_and_filters_by_type_and_time(
    store: ActivityStore,
) -> None:
    kinds = [ActivityType.SEARCHED, ActivityType.PRODUCT_VIEWED]
    store.record([did("c-1", kinds[m % 2], m, subject=f"s-{m}") for m in range(7)])
    store.record([did("c-2", ActivityType.SEARCHED, 3)])  # someone else's

    pages, cursor = [], None
    while True:
        page = store.timeline("c-1", limit=3, cursor=cursor)
        pages.append([e.request_id for e in page.items])
        if (cursor := page.next_cursor) is None:
            break
    assert pages == [
        ["req-6", "req-5", "req-4"],
        ["req-3", "req-2", "req-1"],
        ["req-0"],
    ]
    viewed = store.timeline("c-1", types=[ActivityType.PRODUCT_VIEWED])
    assert [e.subject for e in viewed.items] == ["s-5", "s-3", "s-1"]
    window = store.timeline(
        "c-1", since=START + timedelta(minutes=2), until=START + timedelta(minutes=4)
    )
    assert [e.request_id for e in window.items] == ["req-3", "req-2"]
    assert window.items[0].occurred_at == START + timedelta(minutes=3)
    with pytest.raises(InvalidCursor):
        store.timeline("c-1", cursor="not-a-cursor")


def completed_order(store: EventStore, order: str, customer: str, *skus: str) -> None:
    def event(sequence: int, event_type: str, **data: object) -> Event:
        return Event(
            event_id=event_id(order, sequence),
            aggregate_id=order,
            sequence=sequence,
            event_type=event_type,
            data=data,
            version=2 if event_type == EventType.ORDER_PLACED else 1,
            occurred_at=START,
            user_id=customer,
        )

    items = [{"sku": sku, "quantity": 1} for sku in skus]
    store.append(
        [
            event(1, EventType.ORDER_PLACED, customer_id=customer, items=items, country="NL"),
            event(2, EventType.ORDER_COMPLETED, total_cents=1000),
        ]
    )


def test_recommendations_from_purchases_views_and_searches(
    services: Services, store: ActivityStore
) -> None:
    events, projector = services.event_store, services.projector
    assert events is not None and projector is not None
    projector.sync_catalog()  # SKU-A, SKU-B (widgets), LAST-ONE, RACE-10 (rare)
    completed_order(events, "o-1", "ann", "SKU-A")
    completed_order(events, "o-2", "bob", "SKU-A", "RACE-10")
    completed_order(events, "o-3", "cat", "LAST-ONE")  # shares nothing with ann
    store.record(
        [
            did("ann", ActivityType.PRODUCT_VIEWED, 1, subject="LAST-ONE"),
            did("ann", ActivityType.PRODUCT_VIEWED, 2, subject="LAST-ONE"),
            did("ann", ActivityType.SEARCHED, 3, filters={"category": "widgets"}),
            did("bob", ActivityType.PRODUCT_VIEWED, 4, subject="SKU-B"),  # bob's, not ann's
        ]
    )
    found = recommend("ann", store=store, events=events.engine, read=ReadModel(projector.engine))
    assert [(r.sku, r.score, r.reasons) for r in found] == [
        ("LAST-ONE", 4, ["you viewed it twice"]),
        (
            "RACE-10",
            3,
            ["bought by customers who bought Widget A"],
        ),
        (
            "SKU-B",
            2,
            ["in a category you searched: widgets", "in a category you bought from: widgets"],
        ),
    ]
