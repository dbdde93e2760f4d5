"""Returns: a customer sends back lines of a COMPLETED order, and no coordinator runs it.

The return saga is a choreography (docs/returns.md): each service follows the event store and
reacts to the previous service's event with its own, and a failure travels back as events that
make the earlier services compensate. Every event of a return is in its order's returns stream
(``order-returns-<order_id>``, which also serialises two racing requests: the store's optimistic
concurrency per stream), carries ``correlation_id = return_id`` and ``causation_id`` = the id of
the event it reacts to. Every one's ``data`` holds ``return_id``, ``order_id``, ``customer_id``
and the returned ``lines`` [{sku, quantity, unit_price_cents}], and besides:

=========================  ============  ==================================================
event type                 published by  also in data
=========================  ============  ==================================================
ReturnRequested            api           amount_cents (the lines' amount)
ReturnShipmentCreated      shipping      label (the return parcel's tracking number)
ReturnAccepted             warehouse     note, by (an operator's inspection)
ReturnRejected             warehouse     note, by
StockRestocked             inventory
ReturnRefunded             payment       amount_cents, order_refunded_cents, charged_cents
ReturnRefundRefused        payment       reason (the provider refused it for good)
PointsRevoked              loyalty       points
ReturnParcelSentBack       shipping      tracking_number (back to the customer)
StockUnrestocked           inventory     (the refused refund's compensation)
=========================  ============  ==================================================

Happy path: requested → shipment created → accepted → restocked → refunded → points revoked.
A rejected inspection: shipping sends the parcel back; nothing is restocked or refunded. A
refund refused for good: inventory takes the lines out of stock again and the return waits,
visibly stuck, for an operator.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from cloudmart.contracts.orders import MAX_LINE_QUANTITY, MAX_ORDER_LINES
from cloudmart.contracts.text import Reason, Sku

RETURNS_STREAM_PREFIX = "order-returns-"


def returns_stream(order_id: str) -> str:
    """The event store's stream of every return of the order."""
    return f"{RETURNS_STREAM_PREFIX}{order_id}"


class ReturnEvent(StrEnum):
    RETURN_REQUESTED = "ReturnRequested"
    RETURN_SHIPMENT_CREATED = "ReturnShipmentCreated"
    RETURN_ACCEPTED = "ReturnAccepted"
    RETURN_REJECTED = "ReturnRejected"
    STOCK_RESTOCKED = "StockRestocked"
    RETURN_REFUNDED = "ReturnRefunded"
    RETURN_REFUND_REFUSED = "ReturnRefundRefused"
    POINTS_REVOKED = "PointsRevoked"
    RETURN_PARCEL_SENT_BACK = "ReturnParcelSentBack"
    STOCK_UNRESTOCKED = "StockUnrestocked"


VERSION = 1
"""Every return event's version today."""


class ReturnStatus(StrEnum):
    REQUESTED = "REQUESTED"
    """Waiting for shipping's return label."""
    AWAITING_INSPECTION = "AWAITING_INSPECTION"
    """The parcel is on its way to the warehouse, which inspects it (an operator)."""
    RESTOCKING = "RESTOCKING"
    REFUNDING = "REFUNDING"
    REVOKING_POINTS = "REVOKING_POINTS"
    RETURNED = "RETURNED"
    """Done: restocked, refunded, the lines' points revoked."""
    SENDING_BACK = "SENDING_BACK"
    REJECTED = "REJECTED"
    """Done: the inspection rejected it and the parcel went back to the customer."""
    UNRESTOCKING = "UNRESTOCKING"
    REFUND_REFUSED = "REFUND_REFUSED"
    """Stuck: the provider refused the refund for good and the stock was taken back; an
    operator must settle it with the customer."""


class Step(BaseModel):
    """What a return's last event leads to: the status, and who must act next."""

    status: ReturnStatus
    service: str | None = None
    """The service whose reaction is awaited; None once the return has ended or is stuck."""
    consumer: str | None = None
    """The consumer that reacts (services/choreography); None when a person must act."""
    awaits: str | None = None


STEPS: dict[str, Step] = {
    ReturnEvent.RETURN_REQUESTED: Step(
        status=ReturnStatus.REQUESTED,
        service="shipping",
        consumer="shipping-returns",
        awaits="shipping to create the return label",
    ),
    ReturnEvent.RETURN_SHIPMENT_CREATED: Step(
        status=ReturnStatus.AWAITING_INSPECTION,
        service="warehouse",
        awaits="the parcel, and an operator's inspection (POST /returns/{id}/inspection)",
    ),
    ReturnEvent.RETURN_ACCEPTED: Step(
        status=ReturnStatus.RESTOCKING,
        service="inventory",
        consumer="inventory-returns",
        awaits="inventory to restock the lines",
    ),
    ReturnEvent.STOCK_RESTOCKED: Step(
        status=ReturnStatus.REFUNDING,
        service="payment",
        consumer="payment-returns",
        awaits="payment to refund the lines",
    ),
    ReturnEvent.RETURN_REFUNDED: Step(
        status=ReturnStatus.REVOKING_POINTS,
        service="loyalty",
        consumer="loyalty-returns",
        awaits="loyalty to revoke the lines' points",
    ),
    ReturnEvent.POINTS_REVOKED: Step(status=ReturnStatus.RETURNED),
    ReturnEvent.RETURN_REJECTED: Step(
        status=ReturnStatus.SENDING_BACK,
        service="shipping",
        consumer="shipping-returns",
        awaits="shipping to send the parcel back",
    ),
    ReturnEvent.RETURN_PARCEL_SENT_BACK: Step(status=ReturnStatus.REJECTED),
    ReturnEvent.RETURN_REFUND_REFUSED: Step(
        status=ReturnStatus.UNRESTOCKING,
        service="inventory",
        consumer="inventory-returns",
        awaits="inventory to take the lines out of stock again",
    ),
    ReturnEvent.STOCK_UNRESTOCKED: Step(
        status=ReturnStatus.REFUND_REFUSED,
        service="operator",
        awaits="an operator: the refund was refused for good and the stock taken back",
    ),
}
"""The choreography's map, as ``GET /returns/{id}`` reads it. No service reads this to decide
what to do: each reacts to the events it subscribes to (services/<service>/returns.py)."""

PUBLISHED_BY: dict[str, str] = {
    ReturnEvent.RETURN_REQUESTED: "api",
    ReturnEvent.RETURN_SHIPMENT_CREATED: "shipping",
    ReturnEvent.RETURN_ACCEPTED: "warehouse",
    ReturnEvent.RETURN_REJECTED: "warehouse",
    ReturnEvent.STOCK_RESTOCKED: "inventory",
    ReturnEvent.RETURN_REFUNDED: "payment",
    ReturnEvent.RETURN_REFUND_REFUSED: "payment",
    ReturnEvent.POINTS_REVOKED: "loyalty",
    ReturnEvent.RETURN_PARCEL_SENT_BACK: "shipping",
    ReturnEvent.STOCK_UNRESTOCKED: "inventory",
}
CONSUMERS = ("shipping-returns", "inventory-returns", "payment-returns", "loyalty-returns")
"""The return saga's consumers, each a worker role, each in its service's own database."""
CONSUMER_DATABASE = {consumer: consumer.removesuffix("-returns") for consumer in CONSUMERS}


CARRIED = ("return_id", "order_id", "customer_id", "lines")
"""What every event of a return carries on (its reaction's data starts from these)."""


def carried(data: dict[str, Any]) -> dict[str, Any]:
    return {key: data[key] for key in CARRIED}


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReturnLine(_Request):
    sku: Sku
    quantity: int = Field(strict=True, ge=1, le=MAX_LINE_QUANTITY)


class RequestReturn(_Request):
    """The body of ``POST /orders/{id}/returns``: which lines, and how many of each."""

    lines: Annotated[list[ReturnLine], Field(min_length=1, max_length=MAX_ORDER_LINES)]
    reason: Reason | None = None


class Inspection(_Request):
    """The body of ``POST /returns/{id}/inspection``: the warehouse's verdict on the parcel."""

    accepted: bool
    note: Reason


class PricedLine(BaseModel):
    sku: str
    quantity: int
    unit_price_cents: int


def amount_of(lines: list[PricedLine] | list[dict[str, Any]]) -> int:
    """What the lines cost when bought."""
    return sum(
        (line["quantity"] * line["unit_price_cents"])
        if isinstance(line, dict)
        else line.quantity * line.unit_price_cents
        for line in lines
    )


class ReturnAccepted(BaseModel):
    """The answer to ``POST /orders/{id}/returns``."""

    return_id: str
    order_id: str
    status: ReturnStatus
    lines: list[PricedLine]
    amount_cents: int


class ChainLink(BaseModel):
    """One event of a return's chain."""

    event_id: str
    event_type: str
    service: str
    """Who published it."""
    position: int
    occurred_at: datetime
    recorded_at: datetime
    correlation_id: str | None
    causation_id: str | None
    data: dict[str, Any]


class Waiting(BaseModel):
    """Where a return waits now, and why it may be stuck there."""

    service: str
    awaits: str
    consumer: str | None = None
    reason: str | None = None
    """Why the awaited reaction has not come yet when that is known: the consumer is behind
    (down?), keeps failing, or has parked the event (a dead letter, with its error)."""
    parked: bool = False
    attempts: int = 0
    last_error: str | None = None


class ReturnView(BaseModel):
    """``GET /returns/{id}``: the return's chain, event by event, and where it waits."""

    return_id: str
    order_id: str
    customer_id: str
    status: ReturnStatus
    stuck: bool
    """The chain cannot go on without an operator (a refused refund, a parked event)."""
    lines: list[PricedLine]
    amount_cents: int
    chain: list[ChainLink]
    waiting: Waiting | None
    """None once the return has ended."""
