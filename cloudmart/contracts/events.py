"""The order's events: every transition of the saga, as appended to the order event store.

Each event belongs to an aggregate (the order id) and has a sequence number within it; its id is
derived from both, so appending it again (a retried append, a replayed workflow) is a no-op.
``data`` is JSON; its shape per type, at the current ``version``:

================================  =========================================================
event type (version)              data
================================  =========================================================
OrderPlaced (2)                   customer_id, items [{sku, quantity}], country
InventoryReserved (1)             lines [{sku, quantity, unit_price_cents}], total_cents
InventoryReservationFailed (1)    type, message
FraudCheckPassed (1)              score, reasons
FraudCheckFailed (1)              type, message
PaymentCharged (1)                amount_cents
PaymentReviewRequested (1)        amount_cents
PaymentReviewed (1)               approved
PaymentDeclined (1)               type, message
ShipmentCreated (1)               tracking_number, country
ShipmentFailed (1)                type, message
InventoryCommitted (1)            lines [{sku, quantity, unit_price_cents}]
CompensationStarted (1)           reason
CompensationStuck (1)             step, error
CompensationResolved (1)          step, note (by the operator who resolved it by hand)
StepStuck (1)                     step, error (a forward step keeps failing)
StepRetried (1)                   step, error (by the operator who asked for a retry now)
OrderAborted (1)                  step, error, reason (by the operator who aborted the order)
InventoryReleased (1)             outcome, lines, amount_cents (0)
PaymentRefunded (1)               outcome, lines ([]), amount_cents
ShipmentCancelled (1)             outcome, lines ([]), amount_cents (0)
OrderCompleted (1)                total_cents
OrderFailed (1)                   type, message
OrderCancelled (1)                reason
ProductRated (1)                  sku, customer_id, stars, comment (a product's stream)
CustomerChecked (1)               customer_id, registered, created (the saga's first step)
CustomerCheckFailed (1)           type, message (e.g. AccountClosed)
GuestAccountCancelled (1)         outcome, detail, customer_id, lines ([]), amount_cents (0)
UserCreated (1)                   customer_id, guest, order_id, personal (a customer's stream)
ProfileUpdated (1)                customer_id, fields, personal
AccountClosed (1)                 customer_id, reason
UserCancelled (1)                 customer_id, order_id, reason (Cancel User)
CustomerErased (1)                customer_id (its key destroyed)
================================  =========================================================

Any event may carry a ``correlation_id`` and a ``causation_id`` (both optional, None for the
order saga's events): the choreographed return saga sets them so its chain can be read back
across the services that reacted (docs/returns.md).

``ProductRated`` belongs to its product's stream (``product-<sku>``,
cloudmart/contracts/ratings.py), and a customer's later rating of the product supersedes their
earlier one. ``UserCreated`` to ``CustomerErased`` belong to the customer's stream
(``customer-<id>``, cloudmart/contracts/customers.py); ``personal`` is the customer's
``Profile``, encrypted with their own key. Every other type belongs to an order's stream.

Compensation events carry the compensation's ``outcome`` (UNDONE, NOTHING_TO_UNDO,
ALREADY_UNDONE): only an UNDONE release gives stock back, only an UNDONE refund returns money.
``GuestAccountCancelled`` is Cancel User in the order's stream (the customer's stream has its
own ``UserCancelled``); its ``detail`` says why an account was kept (it has placed another
order since). No order event carries a customer's name or e-mail.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict


class EventType(StrEnum):
    ORDER_PLACED = "OrderPlaced"
    INVENTORY_RESERVED = "InventoryReserved"
    INVENTORY_RESERVATION_FAILED = "InventoryReservationFailed"
    FRAUD_CHECK_PASSED = "FraudCheckPassed"
    FRAUD_CHECK_FAILED = "FraudCheckFailed"
    PAYMENT_CHARGED = "PaymentCharged"
    PAYMENT_REVIEW_REQUESTED = "PaymentReviewRequested"
    PAYMENT_REVIEWED = "PaymentReviewed"
    PAYMENT_DECLINED = "PaymentDeclined"
    SHIPMENT_CREATED = "ShipmentCreated"
    SHIPMENT_FAILED = "ShipmentFailed"
    INVENTORY_COMMITTED = "InventoryCommitted"
    COMPENSATION_STARTED = "CompensationStarted"
    COMPENSATION_STUCK = "CompensationStuck"
    COMPENSATION_RESOLVED = "CompensationResolved"
    STEP_STUCK = "StepStuck"
    STEP_RETRIED = "StepRetried"
    ORDER_ABORTED = "OrderAborted"
    INVENTORY_RELEASED = "InventoryReleased"
    PAYMENT_REFUNDED = "PaymentRefunded"
    SHIPMENT_CANCELLED = "ShipmentCancelled"
    ORDER_COMPLETED = "OrderCompleted"
    ORDER_FAILED = "OrderFailed"
    ORDER_CANCELLED = "OrderCancelled"
    PRODUCT_RATED = "ProductRated"
    CUSTOMER_CHECKED = "CustomerChecked"
    CUSTOMER_CHECK_FAILED = "CustomerCheckFailed"
    GUEST_ACCOUNT_CANCELLED = "GuestAccountCancelled"
    """Cancel User, as the order's stream records it; the customer's own records UserCancelled."""
    USER_CREATED = "UserCreated"
    PROFILE_UPDATED = "ProfileUpdated"
    ACCOUNT_CLOSED = "AccountClosed"
    USER_CANCELLED = "UserCancelled"
    CUSTOMER_ERASED = "CustomerErased"


CURRENT_VERSION: dict[str, int] = {event_type: 1 for event_type in EventType}
CURRENT_VERSION[EventType.ORDER_PLACED] = 2
"""The version each type is written at today; older versions are upcast when read."""

EVENT_NAMESPACE = uuid.UUID("1b7d5e0a-3f7e-4c59-8f0e-2a6c9d4b8e31")


def event_id(aggregate_id: str, sequence: int) -> str:
    """Deterministic: the same event of the same aggregate always has the same id."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{aggregate_id}/{sequence}"))


class Event(BaseModel):
    """An event as appended, and as read back (at its current version)."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    aggregate_id: str
    sequence: int
    event_type: str
    data: dict[str, Any]
    version: int
    occurred_at: datetime
    user_id: str
    correlation_id: str | None = None
    """The business transaction the event belongs to, across streams and services: a return's
    id for every event of that return (cloudmart/contracts/returns.py). None for the order
    saga's events (the order id already says it)."""
    causation_id: str | None = None
    """The ``event_id`` of the event this one reacts to; None for an event a person's request
    or the saga caused."""


class StoredEvent(Event):
    """An event read from the store: with its position in the store's global order, and when
    the store received it."""

    position: int
    recorded_at: datetime
    traceparent: str | None = None
    """The W3C traceparent of the append that stored it (tracing on): where a subscriber's
    handling of it joins the trace of what caused it. Never shown by the API (its routes answer
    ``Event``)."""


class AppendEvents(BaseModel):
    """The argument of the ``event_store.append`` activity."""

    model_config = ConfigDict(frozen=True)

    events: list[Event]


class Appended(BaseModel):
    appended: int
    """How many were new (the rest were already there: a retried append)."""
