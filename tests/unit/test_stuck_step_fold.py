"""A stuck forward step in the order's fold (services/event_store/aggregate.py), which the read
side's order list and the API's fallback share: StepStuck shows it, and the step's success, once
retried, shows it no more; an abort leads to the compensation like any failure."""

from __future__ import annotations

from cloudmart.contracts.events import EventType
from cloudmart.contracts.orders import OrderStatus
from services.event_store.aggregate import replay
from tests.unit.test_order_aggregate import PLACED, story

STUCK = {"step": "payment.check_fraud", "error": "ConnectionError: down"}


def statuses(*steps: tuple[EventType, dict]) -> list[OrderStatus]:
    events = story(*steps)
    return [replay("o-1", events[:n]).status for n in range(1, len(events) + 1)]


def test_a_step_stuck_then_retried_is_stuck_until_it_succeeds() -> None:
    assert statuses(
        (EventType.ORDER_PLACED, PLACED),
        (EventType.INVENTORY_RESERVED, {"lines": [], "total_cents": 2000}),
        (EventType.STEP_STUCK, STUCK),
        (EventType.STEP_RETRIED, STUCK),
        (EventType.FRAUD_CHECK_PASSED, {"score": 0, "reasons": []}),
    )[2:] == [OrderStatus.STEP_STUCK, OrderStatus.STEP_STUCK, OrderStatus.CHARGING_PAYMENT]


def test_each_steps_success_says_where_the_order_stands() -> None:
    """Also the steps that changed no status before (a stuck one ends with them)."""
    for event, data, status in (
        (
            EventType.CUSTOMER_CHECKED,
            {"customer_id": "c-42", "registered": True, "created": False},
            OrderStatus.PENDING,
        ),
        (EventType.SHIPMENT_CREATED, {"tracking_number": "CM-1"}, OrderStatus.CREATING_SHIPMENT),
        (EventType.INVENTORY_COMMITTED, {"lines": []}, OrderStatus.CREATING_SHIPMENT),
    ):
        stuck = {"step": "any.step", "error": "down"}
        after = statuses(
            (EventType.ORDER_PLACED, PLACED), (EventType.STEP_STUCK, stuck), (event, data)
        )
        assert after == [OrderStatus.PENDING, OrderStatus.STEP_STUCK, status], event


def test_an_aborted_order_is_compensated_and_fails() -> None:
    abort = {**STUCK, "reason": "provider down for days"}
    failure = {"type": "AbortedByOperator", "message": "provider down for days"}
    events = story(
        (EventType.ORDER_PLACED, PLACED),
        (EventType.INVENTORY_RESERVED, {"lines": [], "total_cents": 2000}),
        (EventType.STEP_STUCK, STUCK),
        (EventType.ORDER_ABORTED, abort),
        (EventType.COMPENSATION_STARTED, {"reason": "AbortedByOperator: provider down"}),
        (EventType.ORDER_FAILED, failure),
    )
    assert replay("o-1", events[:4]).status is OrderStatus.STEP_STUCK
    assert replay("o-1", events[:5]).status is OrderStatus.COMPENSATING
    order = replay("o-1", events)
    assert order.status is OrderStatus.FAILED
    assert order.failure is not None and order.failure.type == "AbortedByOperator"
