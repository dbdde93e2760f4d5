"""The order aggregate: its state is a pure fold over its events, ``apply(state, event)``.

No I/O, no clock: the same events always give the same state, which is what lets any order be
rebuilt from the store (and checked against what its saga reports).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel

from cloudmart.contracts.events import Event, EventType
from cloudmart.contracts.orders import Failure, OrderItem, OrderStatus


class Order(BaseModel):
    order_id: str
    customer_id: str = ""
    status: OrderStatus = OrderStatus.PENDING
    items: list[OrderItem] = []
    total_cents: int | None = None
    tracking_number: str | None = None
    failure: Failure | None = None
    cancel_reason: str | None = None
    placed_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 0
    """The sequence number of the last event applied."""


STATUS_AFTER: dict[str, OrderStatus] = {
    EventType.ORDER_PLACED: OrderStatus.PENDING,
    # Each step's success says where the order stands, also after the step was stuck (a step
    # stuck and then retried with success is stuck no more; StepRetried alone changes nothing).
    EventType.CUSTOMER_CHECKED: OrderStatus.PENDING,
    EventType.INVENTORY_RESERVED: OrderStatus.CHARGING_PAYMENT,
    EventType.FRAUD_CHECK_PASSED: OrderStatus.CHARGING_PAYMENT,
    EventType.PAYMENT_REVIEW_REQUESTED: OrderStatus.AWAITING_PAYMENT_REVIEW,
    EventType.PAYMENT_REVIEWED: OrderStatus.CHARGING_PAYMENT,
    EventType.PAYMENT_CHARGED: OrderStatus.CREATING_SHIPMENT,
    EventType.SHIPMENT_CREATED: OrderStatus.CREATING_SHIPMENT,
    EventType.INVENTORY_COMMITTED: OrderStatus.CREATING_SHIPMENT,
    EventType.STEP_STUCK: OrderStatus.STEP_STUCK,
    EventType.COMPENSATION_STARTED: OrderStatus.COMPENSATING,
    EventType.COMPENSATION_STUCK: OrderStatus.COMPENSATION_STUCK,
    # A stuck compensation that finally worked, or was resolved by hand, unsticks the order.
    EventType.COMPENSATION_RESOLVED: OrderStatus.COMPENSATING,
    EventType.INVENTORY_RELEASED: OrderStatus.COMPENSATING,
    EventType.PAYMENT_REFUNDED: OrderStatus.COMPENSATING,
    EventType.SHIPMENT_CANCELLED: OrderStatus.COMPENSATING,
    EventType.GUEST_ACCOUNT_CANCELLED: OrderStatus.COMPENSATING,
    EventType.ORDER_COMPLETED: OrderStatus.COMPLETED,
    EventType.ORDER_FAILED: OrderStatus.FAILED,
    EventType.ORDER_CANCELLED: OrderStatus.CANCELLED,
}


def apply(state: Order, event: Event) -> Order:
    """The state after ``event``. Events that change nothing here still advance the version."""
    data = event.data
    changes: dict[str, object] = {"version": event.sequence, "updated_at": event.occurred_at}
    if event.event_type in STATUS_AFTER:
        changes["status"] = STATUS_AFTER[event.event_type]
    match event.event_type:
        case EventType.ORDER_PLACED:
            changes |= {
                "customer_id": data["customer_id"],
                "items": [OrderItem(**item) for item in data["items"]],
                "placed_at": event.occurred_at,
            }
        case EventType.INVENTORY_RESERVED:
            changes["total_cents"] = data["total_cents"]
        case EventType.SHIPMENT_CREATED:
            changes["tracking_number"] = data["tracking_number"]
        case EventType.ORDER_FAILED:
            changes["failure"] = Failure(type=data["type"], message=data["message"])
        case EventType.ORDER_CANCELLED:
            changes["cancel_reason"] = data["reason"]
    return state.model_copy(update=changes)


def replay(order_id: str, events: Iterable[Event]) -> Order:
    state = Order(order_id=order_id)
    for event in events:
        state = apply(state, event)
    return state
