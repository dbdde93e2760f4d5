from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from sqlalchemy import Engine, select
from sqlmodel import Session, col

from api.auth import Caller, CallerDep, OperatorWhenAuth
from api.deps import ReadDep, State
from api.errors import (
    AUTH_RESPONSES,
    ERROR_RESPONSES,
    ApiError,
    ErrorBody,
    Forbidden,
    UnprocessableField,
)
from cloudmart.contracts.events import CURRENT_VERSION, Event, EventType, event_id
from cloudmart.contracts.ratings import (
    MAX_RATED_SKU_LENGTH,
    ProductRated,
    ProductRating,
    RateProduct,
    RatingOutcome,
    product_stream,
)
from cloudmart.contracts.text import Sku
from services.database import read_only, utcnow
from services.event_store.models import EventRow
from services.event_store.store import ConcurrencyConflict, EventStore, OutOfOrder
from services.event_store.upcasting import upcast
from services.inventory.models import Product
from services.readmodel.queries import ProductListing, ProductSort, SalesStats

router = APIRouter(tags=["catalog"], responses=ERROR_RESPONSES)

MAX_PRICE = 10**12
"""Cents: far above any price, and within a 64-bit integer, which is what the databases compare
(a larger bound reached SQLite as an overflow and came back as a 500; found by the fuzzer)."""


@router.get("/products", response_model=list[ProductListing])
def search_products(
    read: ReadDep,
    q: Annotated[str | None, Query(max_length=100, description="in the name or sku")] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    min_price: Annotated[int | None, Query(ge=0, le=MAX_PRICE, description="cents")] = None,
    max_price: Annotated[int | None, Query(ge=0, le=MAX_PRICE, description="cents")] = None,
    in_stock: bool | None = None,
    min_rating: Annotated[
        float | None,
        Query(
            ge=0,
            le=5,
            allow_inf_nan=False,
            description="average stars, 0 to 5; unrated products never match",
        ),
    ] = None,
    sort: ProductSort = ProductSort.NAME,
) -> list[ProductListing]:
    """The catalog with live stock and ratings, from the read side's ``product_search``
    projection: ``stock_on_hand`` is free to order, ``reserved`` is held by sagas in flight,
    ``rating_average`` (null while unrated) and ``rating_count`` count each customer's latest
    rating once. ``sort=rating``: highest average first, ties by more ratings then sku, unrated
    last."""
    return read.products(
        q=q,
        category=category,
        min_price=min_price,
        max_price=max_price,
        in_stock=in_stock,
        min_rating=min_rating,
        sort=sort,
    )


@router.get("/products/{sku}", response_model=ProductListing)
def product(
    read: ReadDep, sku: Annotated[Sku, Path(description="the product's sku")]
) -> ProductListing:
    """One product with its live stock and rating, as ``GET /products`` lists it (a customer's
    view of it is recorded in their activity, docs/activity.md); 404 for an unknown sku."""
    found = read.product(sku)
    if found is None:
        raise ProductNotFound(sku)
    return found


@router.get("/stats", response_model=SalesStats, tags=["stats"], responses=AUTH_RESPONSES)
def sales_stats(read: ReadDep, _: OperatorWhenAuth) -> SalesStats:
    """Per product: units sold, revenue, units given back by compensations; failures by type.
    Business-wide figures: the operator's alone when customer tokens are required."""
    return read.stats()


# --- ratings: a command, so it is checked against the event store, never the read side ------


class ProductNotFound(ApiError):
    status_code = status.HTTP_404_NOT_FOUND

    def __init__(self, sku: str) -> None:
        super().__init__(f"product {sku} not found")


class BusyRating(ApiError):
    status_code = status.HTTP_409_CONFLICT


RATE_ATTEMPTS = 5
"""Appends tried when other ratings of the same product keep taking the next sequence."""

RatedSkuPath = Annotated[
    str,
    Path(
        pattern=rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_RATED_SKU_LENGTH - 1}}}$",
        description="the product's sku",
    ),
]


@router.post(
    "/products/{sku}/ratings",
    status_code=status.HTTP_201_CREATED,
    response_model=ProductRating,
    responses={
        status.HTTP_200_OK: {
            "model": ProductRating,
            "description": "The customer's earlier rating was changed (or was already this one)",
        },
        **AUTH_RESPONSES,
        status.HTTP_403_FORBIDDEN: {
            "model": ErrorBody,
            "description": "No completed order of the customer's has this product, or the "
            "token is another customer's",
        },
    },
)
def rate_product(
    sku: RatedSkuPath, rating: RateProduct, response: Response, state: State, caller: CallerDep
) -> ProductRating:
    """Rate a product bought in a completed order: 201 for the customer's first rating of it,
    200 when it replaces their earlier one (``outcome`` says which). One rating per customer
    and product. The customer is the token's; without customer tokens, ``customer_id`` in the
    body. 403 unless one of the customer's orders with this product has completed, 404 for an
    unknown sku. The search shows it once the projection has caught up."""
    customer_id = _rater(caller, rating)
    if not _in_catalog(state.databases["inventory"], sku):
        raise ProductNotFound(sku)
    if not _bought(state.events.engine, customer_id, sku):
        raise Forbidden(
            f"customer {customer_id} has no completed order with product {sku}: only a "
            "customer who bought it may rate it"
        )
    rated = ProductRated(
        sku=sku, customer_id=customer_id, stars=rating.stars, comment=rating.comment
    )
    outcome = _append_rating(state.events, rated, "operator" if caller.operator else customer_id)
    if outcome is not RatingOutcome.CREATED:
        response.status_code = status.HTTP_200_OK
    return ProductRating(**rated.model_dump(), outcome=outcome)


def _rater(caller: Caller, rating: RateProduct) -> str:
    """A customer token rates as its customer; the operator, or anyone while tokens are not
    required, names the customer in the body (as ``POST /orders`` does)."""
    if caller.customer_id is not None:
        if rating.customer_id not in (None, caller.customer_id):
            raise Forbidden("customer_id: a customer token may rate only as its customer")
        return caller.customer_id
    if rating.customer_id is None:
        raise UnprocessableField(
            ("body", "customer_id"), "required without a customer token: who rates", "missing"
        )
    return rating.customer_id


def _in_catalog(inventory: Engine, sku: str) -> bool:
    """Inventory's catalog decides what exists (the read side may not have synced it yet)."""
    with read_only(inventory).connect() as connection:
        return connection.scalar(select(Product.sku).where(Product.sku == sku)) is not None


def _bought(events: Engine, customer_id: str, sku: str) -> bool:
    """Whether one of the customer's orders with ``sku`` has completed, by the event store:
    the source of truth, which a just-completed order reaches before the projections do.

    OrderPlaced's ``user_id`` is the customer who placed it. Not indexed: this reads the
    customer's OrderPlaced events by a scan of that type (docs/events-and-cqrs.md)."""
    placed = select(EventRow.aggregate_id, EventRow.version, EventRow.data).where(
        EventRow.event_type == EventType.ORDER_PLACED, EventRow.user_id == customer_id
    )
    with Session(read_only(events)) as session:
        orders = [
            order_id
            for order_id, version, data in session.execute(placed)
            if any(
                item["sku"] == sku
                for item in upcast(EventType.ORDER_PLACED, version, data)[1]["items"]
            )
        ]
        if not orders:
            return False
        completed = select(EventRow.position).where(
            col(EventRow.aggregate_id).in_(orders),
            EventRow.event_type == EventType.ORDER_COMPLETED,
        )
        return session.scalar(completed.limit(1)) is not None


def _append_rating(store: EventStore, rated: ProductRated, by: str) -> RatingOutcome:
    """Append ``rated`` to the product's stream at its next sequence, as the store's optimistic
    concurrency wants; another rating taking that sequence first means read and try again."""
    stream = product_stream(rated.sku)
    for _ in range(RATE_ATTEMPTS):
        events = store.stream(stream)
        earlier = [
            ProductRated.model_validate(e.data)
            for e in events
            if e.event_type == EventType.PRODUCT_RATED
            and e.data["customer_id"] == rated.customer_id
        ]
        if earlier and earlier[-1] == rated:
            return RatingOutcome.UNCHANGED  # a retry, or the same again: nothing new to store
        sequence = events[-1].sequence + 1 if events else 1
        event = Event(
            event_id=event_id(stream, sequence),
            aggregate_id=stream,
            sequence=sequence,
            event_type=EventType.PRODUCT_RATED,
            data=rated.model_dump(),
            version=CURRENT_VERSION[EventType.PRODUCT_RATED],
            occurred_at=utcnow(),
            user_id=by,
        )
        try:
            store.append([event])
        except (ConcurrencyConflict, OutOfOrder):
            continue
        return RatingOutcome.CHANGED if earlier else RatingOutcome.CREATED
    raise BusyRating(f"product {rated.sku} is being rated by many at once; try again")
