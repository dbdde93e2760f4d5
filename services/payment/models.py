"""Payment's tables: one charge per order (its primary key) and at most one refund."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from services.choreography.tables import choreography_tables
from services.database import UtcDateTime, utcnow


class PaymentTable(SQLModel, registry=registry()):
    """Base of payment's tables: their own metadata, so they live only in payment's database."""


class ChargeStatus(StrEnum):
    """A charge's life. Each ``*_PENDING`` status is a provider call decided and committed but
    not yet answered: whoever finds it (a retry, a compensation, a concurrent attempt) makes the
    call again, idempotently, and records the answer. No provider call ever happens inside a
    database transaction, and no crash between the two can lose track of money."""

    PENDING = "PENDING"
    """Charge requested from the provider."""
    CAPTURED = "CAPTURED"
    IN_REVIEW = "IN_REVIEW"
    """Held by the provider for fraud review."""
    DECLINED = "DECLINED"
    CAPTURE_PENDING = "CAPTURE_PENDING"
    """Approved in review: capture requested."""
    REJECT_PENDING = "REJECT_PENDING"
    """Rejected in review: void requested."""
    REJECTED = "REJECTED"
    """Held for review and rejected: no money moved."""
    VOID_PENDING = "VOID_PENDING"
    """A compensation of a held payment: void requested."""
    VOIDED = "VOIDED"
    """Held for review and released by a compensation: no money moved."""
    REFUND_PENDING = "REFUND_PENDING"
    """A compensation of a captured payment: refund requested."""
    REFUNDED = "REFUNDED"
    TOMBSTONE = "TOMBSTONE"
    """Compensated before any charge: refuses a late charge for the order."""


AWAITING_PROVIDER = frozenset(
    {
        ChargeStatus.PENDING,
        ChargeStatus.CAPTURE_PENDING,
        ChargeStatus.REJECT_PENDING,
        ChargeStatus.VOID_PENDING,
        ChargeStatus.REFUND_PENDING,
    }
)

MONEY_TAKEN = (ChargeStatus.CAPTURED, ChargeStatus.REFUND_PENDING, ChargeStatus.REFUNDED)
"""Statuses of charges whose amount was captured (a refund is booked separately)."""


class Charge(PaymentTable, table=True):
    __tablename__ = "charges"
    __table_args__ = (CheckConstraint("amount_cents >= 0", name="amount_not_negative"),)

    order_id: str = Field(primary_key=True, max_length=64)
    customer_id: str = Field(max_length=64, index=True)
    amount_cents: int
    status: str = Field(max_length=16)
    payment_token: str = Field(default="", max_length=64)
    """Kept to repeat the provider request under the same idempotency key after a crash."""
    provider_reference: str | None = Field(default=None, max_length=64)
    detail: str | None = Field(default=None, max_length=500)
    """Why it was declined or rejected."""
    undo_reason: str | None = Field(default=None, max_length=500)
    """Why it was voided or refunded (the compensation's reason)."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class Refund(PaymentTable, table=True):
    __tablename__ = "refunds"
    __table_args__ = (CheckConstraint("amount_cents > 0", name="amount_positive"),)

    order_id: str = Field(foreign_key="charges.order_id", primary_key=True, max_length=64)
    amount_cents: int
    reason: str = Field(max_length=500)
    provider_reference: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class FraudCheck(PaymentTable, table=True):
    """The fraud screen's verdict on an order, kept so that a retried check gets the same one
    (a screen's scores drift; the saga must see one decision per order)."""

    __tablename__ = "fraud_checks"

    order_id: str = Field(primary_key=True, max_length=64)
    score: int
    passed: bool
    reasons: str = Field(default="", max_length=500)
    """Semicolon-separated."""
    checked_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


# --- returns (services/payment/returns.py): a choreographed saga's step -----------------------

CHOREOGRAPHY = choreography_tables(PaymentTable.metadata)
"""Payment's return consumer's checkpoint, inbox, outbox and dead letters
(services/choreography)."""


class ReturnRefundStatus(StrEnum):
    REFUNDED = "REFUNDED"
    REFUSED = "REFUSED"
    """The provider refused it for good (or nothing of the charge was left to refund)."""


class ReturnRefund(PaymentTable, table=True):
    """A return's refund: at most one per return; across an order's returns (and its
    compensation's refund) never more than its charge."""

    __tablename__ = "return_refunds"
    __table_args__ = (CheckConstraint("amount_cents >= 0", name="return_refund_not_negative"),)

    return_id: str = Field(primary_key=True, max_length=36)
    order_id: str = Field(index=True, max_length=64)
    amount_cents: int
    status: str = Field(max_length=16)
    provider_reference: str | None = Field(default=None, max_length=64)
    detail: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
