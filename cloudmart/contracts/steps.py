"""Arguments and results of the saga's activities, service by service."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from cloudmart.contracts.customers import Guest
from cloudmart.contracts.orders import OrderItem, ShippingAddress


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True)


class ReservedLine(_Message):
    sku: str
    quantity: int
    unit_price_cents: int


class Compensate(_Message):
    """The argument of every compensation: undo this order's step, for this reason."""

    order_id: str
    reason: str


class Undo(StrEnum):
    UNDONE = "UNDONE"
    """The step had taken effect and is now reversed."""
    NOTHING_TO_UNDO = "NOTHING_TO_UNDO"
    """The step never took effect; a tombstone now refuses it if it arrives late."""
    ALREADY_UNDONE = "ALREADY_UNDONE"
    """An earlier attempt of this compensation did the work."""


class CompensationResult(_Message):
    outcome: Undo
    detail: str = ""
    lines: list[ReservedLine] = []
    """Inventory: the lines whose stock was given back."""
    amount_cents: int = 0
    """Payment: the amount refunded."""


# customers


class EnsureCustomer(_Message):
    """The saga's first step: the order's customer may order. A registered customer's account
    must be open; a guest's (``guest`` set) is opened now, keyed by the order id."""

    order_id: str
    customer_id: str
    guest: Guest | None = None


class CustomerChecked(_Message):
    order_id: str
    customer_id: str
    registered: bool
    """False for a customer id that was never registered (orders from before the customers
    service): such orders go on as they always did (docs/customers.md)."""
    created: bool = False
    """True when this order's step opened the (guest) account."""


# inventory


class ReserveInventory(_Message):
    order_id: str
    items: list[OrderItem]


class Reservation(_Message):
    order_id: str
    lines: list[ReservedLine]
    total_cents: int


class CommitInventory(_Message):
    order_id: str


class ProductView(_Message):
    sku: str
    name: str
    category: str
    price_cents: int
    stock_on_hand: int
    reserved: int


class CatalogEntry(_Message):
    """A product's static facts: what the read side joins with the stock movements it sees in
    the order events (on hand = received - reserved - sold)."""

    sku: str
    name: str
    category: str
    price_cents: int
    received: int


# payment


class ChargePayment(_Message):
    order_id: str
    customer_id: str
    payment_token: str
    amount_cents: int


class ChargeStatus(StrEnum):
    CAPTURED = "CAPTURED"
    REVIEW_REQUIRED = "REVIEW_REQUIRED"


class ChargeResult(_Message):
    order_id: str
    status: ChargeStatus
    amount_cents: int
    reference: str


class CheckFraud(_Message):
    """What the fraud screen weighs before any money moves."""

    order_id: str
    customer_id: str
    payment_token: str
    amount_cents: int
    country: str


class FraudAssessment(_Message):
    order_id: str
    score: int
    """0 (no risk seen) to 100; at or above the screen's limit the order is refused."""
    reasons: list[str] = []


class ResolvePaymentReview(_Message):
    order_id: str
    approved: bool


# shipping


class CreateShipment(_Message):
    order_id: str
    address: ShippingAddress


class ShipmentResult(_Message):
    order_id: str
    tracking_number: str
