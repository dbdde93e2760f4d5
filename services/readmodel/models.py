"""The projections' tables. Nothing here is a source of truth: all of it can be dropped and
rebuilt from the order events (``make rebuild-projections``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from services.database import UtcDateTime


class ReadModelTable(SQLModel, registry=registry()):
    """Base of the read side's tables: their own metadata, in their own database."""


class OrderSummary(ReadModelTable, table=True):
    """One row per order, for listing and filtering."""

    __tablename__ = "order_summary"
    __table_args__ = (
        Index("ix_order_summary_listing", "created_at", "order_id"),
        Index("ix_order_summary_customer", "customer_id", "created_at"),
        Index("ix_order_summary_status", "status", "created_at"),
    )

    order_id: str = Field(primary_key=True, max_length=64)
    customer_id: str = Field(max_length=64)
    status: str = Field(max_length=32)
    total_cents: int | None = None
    """Set by InventoryReserved: None while the events show nothing reserved."""
    item_count: int
    """Units ordered, over all lines."""
    failure_type: str | None = Field(default=None, max_length=64)
    failure_message: str | None = Field(default=None, max_length=500)
    cancel_reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(sa_type=UtcDateTime)
    updated_at: datetime = Field(sa_type=UtcDateTime)


class ProductSales(ReadModelTable, table=True):
    __tablename__ = "sales_by_product"

    sku: str = Field(primary_key=True, max_length=64)
    units_sold: int = 0
    revenue_cents: int = 0
    units_released: int = 0
    """Units reserved and then given back by a compensation."""


class FailureCount(ReadModelTable, table=True):
    __tablename__ = "failures_by_reason"

    failure_type: str = Field(primary_key=True, max_length=64)
    orders: int = 0


class ProductSearch(ReadModelTable, table=True):
    """The catalog with live stock, for search with filters and sorting."""

    __tablename__ = "product_search"

    sku: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    category: str = Field(max_length=64, index=True)
    price_cents: int = Field(index=True)
    received: int = 0
    reserved: int = 0
    sold: int = 0
    stock_on_hand: int = 0
    """received - reserved - sold, kept in step so that filters can use it."""
    rating_count: int = 0
    """Customers who rated it: each counts once, with their latest rating."""
    rating_total: int = 0
    """The sum of those customers' stars."""
    rating_average: float | None = Field(default=None, index=True)
    """rating_total / rating_count, kept in step so that a filter and a sort can use it; None
    while nobody has rated the product."""


class ProductRatingRow(ReadModelTable, table=True):
    """Each customer's current rating of each product: what a later rating supersedes."""

    __tablename__ = "product_ratings"

    sku: str = Field(primary_key=True, max_length=64)
    customer_id: str = Field(primary_key=True, max_length=64)
    stars: int


class Checkpoint(ReadModelTable, table=True):
    """How far a subscriber has read the event store; updated with what it wrote."""

    __tablename__ = "checkpoints"

    name: str = Field(primary_key=True, max_length=64)
    position: int = Field(default=0, sa_type=BigInteger)
    """The store's positions are 64-bit: so is a subscriber's place in it."""
    lag_ms: float | None = None
    """From the last event's arrival in the store to its projection."""
    updated_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
