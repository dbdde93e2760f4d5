"""The read side's questions, answered from the projections alone."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel
from sqlalchemy import Engine, and_, func, or_, select
from sqlmodel import Session, col

from cloudmart.contracts.customers import CustomerStatus
from cloudmart.contracts.orders import OrderStatus
from cloudmart.contracts.steps import ProductView
from services.database import read_only
from services.readmodel.customer_stats import (
    ACTIVE_WINDOW_DAYS,
    active_window,
    average_order_value,
    repeat_purchase_rate,
)
from services.readmodel.customers import STATS
from services.readmodel.models import (
    Checkpoint,
    CustomerDay,
    CustomerStats,
    FailureCount,
    OrderSummary,
    ProductSales,
    ProductSearch,
    UserView,
)
from services.readmodel.projector import NAME


class OrderRow(BaseModel):
    order_id: str
    status: OrderStatus
    customer_id: str
    total_cents: int | None
    item_count: int
    failure_type: str | None
    failure_message: str | None
    cancel_reason: str | None
    created_at: datetime
    updated_at: datetime


class OrderListing(BaseModel):
    items: list[OrderRow]
    next_cursor: str | None


class ProductStats(BaseModel):
    sku: str
    units_sold: int
    revenue_cents: int
    units_released: int


class FailureStats(BaseModel):
    type: str
    orders: int


class SalesStats(BaseModel):
    products: list[ProductStats]
    failures: list[FailureStats]


class ProductSort(StrEnum):
    NAME = "name"
    PRICE = "price"
    PRICE_DESC = "-price"
    STOCK = "stock"
    STOCK_DESC = "-stock"
    RATING = "rating"
    """Highest average first; ties by more ratings, then by sku; unrated products last."""


class ProductListing(ProductView):
    """A product as the search answers it: the catalog, live stock, and customers' ratings."""

    rating_average: float | None
    """None while nobody has rated it."""
    rating_count: int


class ProjectionStatus(BaseModel):
    position: int
    lag_ms: float | None
    updated_at: datetime | None


class ProfileShown(BaseModel):
    name: str
    email: str


class LastOrder(BaseModel):
    order_id: str
    status: OrderStatus
    placed_at: datetime


class CustomerView(BaseModel):
    """``GET /customers/{id}/view``: the UserView projection's row."""

    customer_id: str
    registered: bool
    """False for a customer id known only from its orders (never registered)."""
    guest: bool
    """Registered by a guest checkout."""
    status: CustomerStatus | None
    """The account's status; null while never registered."""
    profile: ProfileShown | None
    """Null when never registered, erased, or profiles are not shown by this deployment."""
    erased: bool
    """The customer's personal data is erased (their key destroyed)."""
    orders: int
    orders_by_status: dict[str, int]
    """Orders per current status; statuses with none are left out."""
    completed_orders: int
    lifetime_spend_cents: int
    """The completed orders' totals."""
    loyalty_points: int
    """Loyalty's rule over the same events (a point per whole currency unit of a completed
    order, taken back by a refund); GET /customers/{id}/loyalty is loyalty's own account."""
    last_order: LastOrder | None
    favourite_categories: list[str]
    """Up to three, by units bought, most first."""
    first_seen_at: datetime
    updated_at: datetime


class NewCustomers(BaseModel):
    day: date
    customers: int


class CustomerStatistics(BaseModel):
    """``GET /stats/customers``: the UserStatistics projection. "Today" is the data's latest
    day (``as_of``), not the clock's: the figures depend on the events alone."""

    as_of: date | None
    """The UTC day of the latest customer or order event; null before any."""
    customers: int
    """Every customer known: registered, or only from their orders."""
    registered: int
    new_customers: list[NewCustomers]
    """Customers first seen each day (UTC), oldest first, for the days ending on ``as_of``
    (days with none included, as 0)."""
    active_window_days: int
    active_customers: int
    """Customers who placed an order within the ``active_window_days`` days ending on
    ``as_of``."""
    buyers: int
    """Customers with at least one completed order."""
    repeat_buyers: int
    """Customers with at least two completed orders."""
    repeat_purchase_rate: float | None
    """repeat_buyers / buyers; null while there are no buyers."""
    completed_orders: int
    average_order_value_cents: int | None
    """The completed orders' mean total, to the nearest cent; null while there are none."""


class InvalidCursor(ValueError):
    pass


class ReadModel:
    def __init__(self, engine: Engine) -> None:
        self.engine = read_only(engine)

    def orders(
        self,
        *,
        status: OrderStatus | None = None,
        customer_id: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> OrderListing:
        """Newest first, by creation time (then order id); the cursor is where the page ended."""
        statement = select(OrderSummary)
        if status is not None:
            statement = statement.where(OrderSummary.status == status)
        if customer_id is not None:
            statement = statement.where(OrderSummary.customer_id == customer_id)
        if created_from is not None:
            statement = statement.where(col(OrderSummary.created_at) >= created_from)
        if created_to is not None:
            statement = statement.where(col(OrderSummary.created_at) < created_to)
        if cursor is not None:
            after_time, after_id = _decode(cursor)
            statement = statement.where(
                or_(
                    col(OrderSummary.created_at) < after_time,
                    and_(
                        col(OrderSummary.created_at) == after_time,
                        col(OrderSummary.order_id) < after_id,
                    ),
                )
            )
        statement = statement.order_by(
            col(OrderSummary.created_at).desc(), col(OrderSummary.order_id).desc()
        ).limit(limit + 1)
        with Session(self.engine) as session:
            rows = [
                OrderRow.model_validate(r, from_attributes=True) for r in session.scalars(statement)
            ]
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode(rows[-1].created_at, rows[-1].order_id) if more else None
        return OrderListing(items=rows, next_cursor=next_cursor)

    def count_by_status(self, statuses: Iterable[OrderStatus]) -> dict[OrderStatus, int]:
        """How many orders are in each of ``statuses`` now (0 for none)."""
        wanted = list(statuses)
        statement = (
            select(OrderSummary.status, func.count())
            .where(col(OrderSummary.status).in_(wanted))
            .group_by(OrderSummary.status)
        )
        with Session(self.engine) as session:
            found = {OrderStatus(status): count for status, count in session.execute(statement)}
        return {status: found.get(status, 0) for status in wanted}

    def stats(self) -> SalesStats:
        with Session(self.engine) as session:
            products = session.scalars(select(ProductSales).order_by(ProductSales.sku)).all()
            failures = session.scalars(
                select(FailureCount).order_by(
                    col(FailureCount.orders).desc(), FailureCount.failure_type
                )
            ).all()
            return SalesStats(
                products=[ProductStats.model_validate(p, from_attributes=True) for p in products],
                failures=[FailureStats(type=f.failure_type, orders=f.orders) for f in failures],
            )

    def products(
        self,
        *,
        q: str | None = None,
        category: str | None = None,
        min_price: int | None = None,
        max_price: int | None = None,
        in_stock: bool | None = None,
        min_rating: float | None = None,
        sort: ProductSort = ProductSort.NAME,
    ) -> list[ProductListing]:
        statement = select(ProductSearch)
        if q:
            # autoescape: a "%" or "_" in the search is that character, not a wildcard.
            text = q.lower()
            statement = statement.where(
                or_(
                    func.lower(ProductSearch.name).contains(text, autoescape=True),
                    func.lower(ProductSearch.sku).contains(text, autoescape=True),
                )
            )
        if category is not None:
            statement = statement.where(ProductSearch.category == category)
        if min_price is not None:
            statement = statement.where(col(ProductSearch.price_cents) >= min_price)
        if max_price is not None:
            statement = statement.where(col(ProductSearch.price_cents) <= max_price)
        if in_stock is not None:
            on_hand = col(ProductSearch.stock_on_hand)
            statement = statement.where(on_hand > 0 if in_stock else on_hand <= 0)
        if min_rating is not None:
            # An unrated product (average NULL) matches no minimum, not even 0: it has no rating.
            statement = statement.where(col(ProductSearch.rating_average) >= min_rating)
        average = col(ProductSearch.rating_average)
        order = {
            ProductSort.NAME: (col(ProductSearch.name),),
            ProductSort.PRICE: (col(ProductSearch.price_cents),),
            ProductSort.PRICE_DESC: (col(ProductSearch.price_cents).desc(),),
            ProductSort.STOCK: (col(ProductSearch.stock_on_hand),),
            ProductSort.STOCK_DESC: (col(ProductSearch.stock_on_hand).desc(),),
            # NULLS LAST spelled out: PostgreSQL puts NULLs first in a descending order, SQLite
            # last; either way an unrated product comes after every rated one.
            ProductSort.RATING: (
                average.desc().nulls_last(),
                col(ProductSearch.rating_count).desc(),
            ),
        }[sort]
        statement = statement.order_by(*order, ProductSearch.sku)
        with Session(self.engine) as session:
            return [_listing(p) for p in session.scalars(statement)]

    def product(self, sku: str) -> ProductListing | None:
        """One product as the search lists it; None for a sku the catalog does not have."""
        with Session(self.engine) as session:
            row = session.get(ProductSearch, sku)
            return None if row is None else _listing(row)

    def customer(self, customer_id: str) -> CustomerView | None:
        """The customer's UserView row; None for a customer no event has named."""
        with Session(self.engine) as session:
            row = session.get(UserView, customer_id)
        if row is None:
            return None
        profile = None
        if row.name is not None and row.email is not None:
            profile = ProfileShown(name=row.name, email=row.email)
        last = None
        if row.last_order_id is not None:
            last = LastOrder(
                order_id=row.last_order_id,
                status=OrderStatus(row.last_order_status),
                placed_at=row.last_order_at,
            )
        return CustomerView(
            **row.model_dump(
                exclude={"name", "email", "last_order_id", "last_order_status", "last_order_at"}
            ),
            profile=profile,
            last_order=last,
        )

    def customer_stats(self, days: int = ACTIVE_WINDOW_DAYS) -> CustomerStatistics:
        """The running totals, and at most ``days`` + 30 rows of per-day counts: no scan of
        the customers, however many there are."""
        with Session(self.engine) as session:
            stats = session.get(CustomerStats, STATS) or CustomerStats(scope=STATS)
            latest = stats.latest_day
            new, active = [], 0
            if latest is not None:
                first = latest - timedelta(days=days - 1)
                counted = {
                    day: n
                    for day, n in session.execute(
                        select(CustomerDay.day, CustomerDay.new_customers).where(
                            col(CustomerDay.day).between(first, latest)
                        )
                    )
                }
                new = [
                    NewCustomers(day=day, customers=counted.get(day, 0))
                    for day in (first + timedelta(days=n) for n in range(days))
                ]
                since, until = active_window(latest)
                active = session.scalar(
                    select(func.coalesce(func.sum(CustomerDay.last_ordered), 0)).where(
                        col(CustomerDay.day).between(since, until)
                    )
                )
        return CustomerStatistics(
            as_of=latest,
            customers=stats.customers,
            registered=stats.registered,
            new_customers=new,
            active_window_days=ACTIVE_WINDOW_DAYS,
            active_customers=active or 0,
            buyers=stats.buyers,
            repeat_buyers=stats.repeat_buyers,
            repeat_purchase_rate=repeat_purchase_rate(stats.buyers, stats.repeat_buyers),
            completed_orders=stats.completed_orders,
            average_order_value_cents=average_order_value(
                stats.completed_cents, stats.completed_orders
            ),
        )

    def status(self) -> ProjectionStatus:
        with Session(self.engine) as session:
            checkpoint = session.get(Checkpoint, NAME)
        if checkpoint is None:
            return ProjectionStatus(position=0, lag_ms=None, updated_at=None)
        return ProjectionStatus(
            position=checkpoint.position, lag_ms=checkpoint.lag_ms, updated_at=checkpoint.updated_at
        )


def _listing(p: ProductSearch) -> ProductListing:
    return ProductListing(
        sku=p.sku,
        name=p.name,
        category=p.category,
        price_cents=p.price_cents,
        stock_on_hand=p.stock_on_hand,
        reserved=p.reserved,
        rating_average=p.rating_average,
        rating_count=p.rating_count,
    )


def _encode(created_at: datetime, order_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), order_id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        created_at, order_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        at = datetime.fromisoformat(created_at)
        if at.tzinfo is None:
            raise ValueError("a naive time")
        return at.astimezone(UTC), str(order_id)
    except (ValueError, TypeError, OverflowError) as err:
        raise InvalidCursor("not a cursor this API returned") from err
