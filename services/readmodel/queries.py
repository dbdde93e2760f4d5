"""The read side's questions, answered from the projections alone."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel
from sqlalchemy import Engine, and_, func, or_, select
from sqlmodel import Session, col

from cloudmart.contracts.orders import OrderStatus
from cloudmart.contracts.steps import ProductView
from services.database import read_only
from services.readmodel.models import (
    Checkpoint,
    FailureCount,
    OrderSummary,
    ProductSales,
    ProductSearch,
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
            return [
                ProductListing(
                    sku=p.sku,
                    name=p.name,
                    category=p.category,
                    price_cents=p.price_cents,
                    stock_on_hand=p.stock_on_hand,
                    reserved=p.reserved,
                    rating_average=p.rating_average,
                    rating_count=p.rating_count,
                )
                for p in session.scalars(statement)
            ]

    def status(self) -> ProjectionStatus:
        with Session(self.engine) as session:
            checkpoint = session.get(Checkpoint, NAME)
        if checkpoint is None:
            return ProjectionStatus(position=0, lag_ms=None, updated_at=None)
        return ProjectionStatus(
            position=checkpoint.position, lag_ms=checkpoint.lag_ms, updated_at=checkpoint.updated_at
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
