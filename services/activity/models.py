"""Activity's table: one row per customer action, and the kinds of action."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from services.database import UtcDateTime


class ActivityType(StrEnum):
    SEARCHED = "searched"
    """``GET /products`` by a customer: ``data.filters``, the filters given."""
    PRODUCT_VIEWED = "product_viewed"
    """``GET /products/{sku}``: ``subject`` is the sku."""
    ORDER_PLACED = "order_placed"
    """``POST /orders`` accepted: ``subject`` the order id, ``data.items`` its lines."""
    ORDER_CANCELLED = "order_cancelled"
    """``POST /orders/{id}/cancel`` accepted: ``subject`` the order id."""
    ORDER_RETURNED = "order_returned"
    """Defined for returns (a later issue): nothing records it yet."""
    PRODUCT_RATED = "product_rated"
    """``POST /products/{sku}/ratings`` stored or confirmed: ``subject`` the sku, ``data.stars``."""
    REGISTERED = "registered"
    """``POST /customers`` answered 201."""
    TOKEN_ISSUED = "token_issued"
    """The API handed the customer a token (a registration's, with tokens required)."""


class ActivityTable(SQLModel, registry=registry()):
    """Base of activity's tables: their own metadata, in their own database."""


class ActivityRow(ActivityTable, table=True):
    __tablename__ = "activity_events"
    __table_args__ = (
        Index("ix_activity_customer_time", "customer_id", "occurred_at"),
        Index("ix_activity_type_subject", "activity_type", "subject"),
    )

    position: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger().with_variant(Integer(), "sqlite")
    )
    event_id: str = Field(unique=True, max_length=36)
    """A UUIDv5 of (customer, type, key): a retried request's action maps to the same id, and
    the insert skips it."""
    customer_id: str = Field(max_length=64)
    activity_type: str = Field(max_length=32)
    subject: str | None = Field(default=None, max_length=64)
    """What it was about: the sku of a view or rating, the order id of an order's action."""
    data: dict[str, Any] = Field(sa_type=JSON)
    occurred_at: datetime = Field(sa_type=UtcDateTime)
    request_id: str = Field(max_length=128)
    key: str = Field(max_length=320)
    """What made the action unique: the Idempotency-Key, the client's X-Request-Id, a natural
    key (an order is cancelled once) or a fresh id (docs/activity.md)."""
