"""The projections' tables. Nothing here is a source of truth: all of it can be dropped and
rebuilt from the order events (``make rebuild-projections``)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Index
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


# --- customers: UserView and UserStatistics (services/readmodel/customers.py) -----------------


class UserView(ReadModelTable, table=True):
    """One row per customer, denormalised for ``GET /customers/{id}/view``: a registered
    customer from ``UserCreated``, or one known only from their orders (``registered`` false)."""

    __tablename__ = "user_view"

    customer_id: str = Field(primary_key=True, max_length=64)
    registered: bool = False
    """Whether a ``UserCreated`` was seen; false for customer ids that only placed orders."""
    guest: bool = False
    status: str | None = Field(default=None, max_length=16)
    """The account's CustomerStatus; None while never registered."""
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=254)
    """Name and e-mail as opened from the events' sealed ``personal``: personal data, blanked
    when the customer is erased (or never filled when it cannot be opened)."""
    erased: bool = False
    """Erased (``CustomerErased``), or its profile could not be opened: its key is gone."""
    orders: int = 0
    orders_by_status: dict[str, int] = Field(default_factory=dict, sa_type=JSON)
    """Orders per current status (only statuses with at least one)."""
    completed_orders: int = 0
    lifetime_spend_cents: int = Field(default=0, sa_type=BigInteger)
    """The completed orders' totals."""
    loyalty_points: int = 0
    """As loyalty counts them (services/loyalty/account.py's rule), from the same events."""
    last_order_id: str | None = Field(default=None, max_length=64)
    last_order_status: str | None = Field(default=None, max_length=32)
    last_order_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    """When the customer's latest order was placed."""
    favourite_categories: list[str] = Field(default_factory=list, sa_type=JSON)
    """Up to three, by units bought, most first (ties by name)."""
    first_seen_at: datetime = Field(sa_type=UtcDateTime)
    """The customer's first event: UserCreated or their first order, whichever came first."""
    updated_at: datetime = Field(sa_type=UtcDateTime)


class UserOrder(ReadModelTable, table=True):
    """What the customer projections remember of each order between its events."""

    __tablename__ = "user_orders"

    order_id: str = Field(primary_key=True, max_length=64)
    customer_id: str = Field(max_length=64)
    status: str = Field(max_length=32)
    placed_at: datetime = Field(sa_type=UtcDateTime)
    points_awarded: int = 0
    points_revoked: int = 0


class UserCategory(ReadModelTable, table=True):
    """Units each customer bought per category: the favourite categories are its top three."""

    __tablename__ = "user_categories"

    customer_id: str = Field(primary_key=True, max_length=64)
    category: str = Field(primary_key=True, max_length=64)
    units: int = 0


class CustomerStats(ReadModelTable, table=True):
    """UserStatistics' running totals: one row (``scope`` "all"), kept by the projector."""

    __tablename__ = "customer_stats"

    scope: str = Field(primary_key=True, max_length=16)
    customers: int = 0
    registered: int = 0
    buyers: int = 0
    """Customers with at least one completed order."""
    repeat_buyers: int = 0
    """Customers with at least two completed orders."""
    completed_orders: int = 0
    completed_cents: int = Field(default=0, sa_type=BigInteger)
    latest_day: date | None = None
    """The day (UTC) of the latest customer or order event seen: "today" for the statistics,
    so that they depend on the events alone (a rebuild gives the same) and not on the clock."""


class CustomerDay(ReadModelTable, table=True):
    """UserStatistics per day (UTC): new customers, and customers whose latest order is that
    day (summed over a window, the active customers, without a scan of the customers)."""

    __tablename__ = "customer_days"

    day: date = Field(primary_key=True)
    new_customers: int = 0
    last_ordered: int = 0
