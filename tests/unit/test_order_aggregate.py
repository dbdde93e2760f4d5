"""The order aggregate and its events' schema versions, as pure functions: an order's state is a
fold over its events, and an event stored at an older version reads as the current one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cloudmart.contracts.events import CURRENT_VERSION, Event, EventType, event_id
from cloudmart.contracts.orders import OrderStatus
from services.event_store.aggregate import Order, apply, replay
from services.event_store.upcasting import upcast

T0 = datetime(2026, 12, 1, tzinfo=UTC)
PLACED = {"customer_id": "c-42", "items": [{"sku": "SKU-A", "quantity": 2}], "country": "DE"}


def story(*steps: tuple[EventType, dict]) -> list[Event]:
    return [
        Event(
            event_id=event_id("o-1", n),
            aggregate_id="o-1",
            sequence=n,
            event_type=event_type,
            data=data,
            version=CURRENT_VERSION[event_type],
            occurred_at=T0 + timedelta(seconds=n),
            user_id="system",
        )
        for n, (event_type, data) in enumerate(steps, start=1)
    ]


def test_a_completed_order_is_the_fold_of_its_events() -> None:
    order = replay(
        "o-1",
        story(
            (EventType.ORDER_PLACED, PLACED),
            (EventType.INVENTORY_RESERVED, {"lines": [], "total_cents": 2000}),
            (EventType.FRAUD_CHECK_PASSED, {"score": 0, "reasons": []}),
            (EventType.PAYMENT_CHARGED, {"amount_cents": 2000}),
            (EventType.SHIPMENT_CREATED, {"tracking_number": "CM-1", "country": "DE"}),
            (EventType.INVENTORY_COMMITTED, {"lines": []}),
            (EventType.ORDER_COMPLETED, {"total_cents": 2000}),
        ),
    )
    assert (order.status, order.customer_id, order.total_cents) == (
        OrderStatus.COMPLETED,
        "c-42",
        2000,
    )
    assert order.tracking_number == "CM-1"
    assert [(i.sku, i.quantity) for i in order.items] == [("SKU-A", 2)]
    assert (order.version, order.placed_at, order.updated_at) == (
        7,
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=7),
    )


def test_a_failed_order_keeps_its_failure_and_a_stuck_one_shows_until_resolved() -> None:
    events = story(
        (EventType.ORDER_PLACED, PLACED),
        (EventType.INVENTORY_RESERVED, {"lines": [], "total_cents": 2000}),
        (EventType.PAYMENT_DECLINED, {"type": "PaymentDeclined", "message": "no"}),
        (EventType.COMPENSATION_STARTED, {"reason": "PaymentDeclined: no"}),
        (EventType.COMPENSATION_STUCK, {"step": "inventory.release", "error": "down"}),
        (EventType.COMPENSATION_RESOLVED, {"step": "inventory.release", "note": "by hand"}),
        (EventType.ORDER_FAILED, {"type": "PaymentDeclined", "message": "no"}),
    )
    statuses = []
    order = Order(order_id="o-1")
    for event in events:
        order = apply(order, event)
        statuses.append(order.status)
    assert statuses[3:] == [
        OrderStatus.COMPENSATING,
        OrderStatus.COMPENSATION_STUCK,
        OrderStatus.COMPENSATING,
        OrderStatus.FAILED,
    ]
    assert order.failure is not None and order.failure.type == "PaymentDeclined"


def test_folding_is_pure_the_same_events_give_the_same_order() -> None:
    events = story((EventType.ORDER_PLACED, PLACED), (EventType.ORDER_CANCELLED, {"reason": "r"}))
    assert replay("o-1", events) == replay("o-1", events)
    assert replay("o-1", events).cancel_reason == "r"


def test_an_order_placed_at_version_1_reads_as_version_2() -> None:
    version, data = upcast(
        EventType.ORDER_PLACED, 1, {"customer_id": "c-1", "items": [{"sku": "S", "qty": 3}]}
    )
    assert version == CURRENT_VERSION[EventType.ORDER_PLACED] == 2
    assert data == {"customer_id": "c-1", "items": [{"sku": "S", "quantity": 3}], "country": None}


def test_an_event_at_its_current_version_is_left_as_it_is() -> None:
    assert upcast(EventType.ORDER_COMPLETED, 1, {"total_cents": 5}) == (1, {"total_cents": 5})


def test_a_version_with_no_upcaster_is_an_error_not_a_guess() -> None:
    with pytest.raises(ValueError, match="no upcaster for OrderPlaced version 0"):
        upcast(EventType.ORDER_PLACED, 0, {})


def test_cancel_user_unsticks_the_order_as_the_other_compensations_do() -> None:
    """The customers step changes no status; Cancel User, the last compensation, is one like
    the others: once it ends, a stuck order is compensating again, until it has failed."""
    guest = {"customer_id": "guest-1", "lines": [], "amount_cents": 0}
    events = story(
        (EventType.ORDER_PLACED, {**PLACED, "customer_id": "guest-1"}),
        (
            EventType.CUSTOMER_CHECKED,
            {"customer_id": "guest-1", "registered": True, "created": True},
        ),
        (EventType.INVENTORY_RESERVATION_FAILED, {"type": "OutOfStock", "message": "none"}),
        (EventType.COMPENSATION_STARTED, {"reason": "OutOfStock: none"}),
        (EventType.INVENTORY_RELEASED, {**guest, "outcome": "NOTHING_TO_UNDO"}),
        (EventType.COMPENSATION_STUCK, {"step": "customers.cancel_user", "error": "down"}),
        (EventType.GUEST_ACCOUNT_CANCELLED, {**guest, "outcome": "UNDONE", "detail": ""}),
        (EventType.ORDER_FAILED, {"type": "OutOfStock", "message": "none"}),
    )
    assert replay("o-1", events[:2]).status is OrderStatus.PENDING
    assert replay("o-1", events[:6]).status is OrderStatus.COMPENSATION_STUCK
    assert replay("o-1", events[:7]).status is OrderStatus.COMPENSATING
    assert replay("o-1", events).status is OrderStatus.FAILED
