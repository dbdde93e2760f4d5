"""Payment's tables: one charge per order (its primary key) and at most one refund."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, DateTime
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from services.database import utcnow


class PaymentTable(SQLModel, registry=registry()):
    """Base of payment's tables: their own metadata, so they live only in payment's database."""


class ChargeStatus(StrEnum):
    PENDING = "PENDING"
    """Sent to the provider, answer not recorded yet (or lost in a crash)."""
    CAPTURED = "CAPTURED"
    IN_REVIEW = "IN_REVIEW"
    DECLINED = "DECLINED"
    REJECTED = "REJECTED"
    """Held for review and rejected: no money moved."""
    VOIDED = "VOIDED"
    """Held for review and released by a compensation: no money moved."""
    REFUNDED = "REFUNDED"
    TOMBSTONE = "TOMBSTONE"
    """Compensated before any charge: refuses a late charge for the order."""


MONEY_TAKEN = (ChargeStatus.CAPTURED, ChargeStatus.REFUNDED)
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
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class Refund(PaymentTable, table=True):
    __tablename__ = "refunds"
    __table_args__ = (CheckConstraint("amount_cents > 0", name="amount_positive"),)

    order_id: str = Field(foreign_key="charges.order_id", primary_key=True, max_length=64)
    amount_cents: int
    reason: str = Field(max_length=500)
    provider_reference: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
