from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import OperatorWhenAuth
from api.deps import ReadDep
from api.errors import AUTH_RESPONSES, ERROR_RESPONSES
from cloudmart.contracts.steps import ProductView
from services.readmodel.queries import ProductSort, SalesStats

router = APIRouter(tags=["catalog"], responses=ERROR_RESPONSES)

MAX_PRICE = 10**12
"""Cents: far above any price, and within a 64-bit integer, which is what the databases compare
(a larger bound reached SQLite as an overflow and came back as a 500; found by the fuzzer)."""


@router.get("/products", response_model=list[ProductView])
def search_products(
    read: ReadDep,
    q: Annotated[str | None, Query(max_length=100, description="in the name or sku")] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    min_price: Annotated[int | None, Query(ge=0, le=MAX_PRICE, description="cents")] = None,
    max_price: Annotated[int | None, Query(ge=0, le=MAX_PRICE, description="cents")] = None,
    in_stock: bool | None = None,
    sort: ProductSort = ProductSort.NAME,
) -> list[ProductView]:
    """The catalog with live stock, from the read side's ``product_search`` projection:
    ``stock_on_hand`` is free to order, ``reserved`` is held by sagas in flight."""
    return read.products(
        q=q,
        category=category,
        min_price=min_price,
        max_price=max_price,
        in_stock=in_stock,
        sort=sort,
    )


@router.get("/stats", response_model=SalesStats, tags=["stats"], responses=AUTH_RESPONSES)
def sales_stats(read: ReadDep, _: OperatorWhenAuth) -> SalesStats:
    """Per product: units sold, revenue, units given back by compensations; failures by type.
    Business-wide figures: the operator's alone when customer tokens are required."""
    return read.stats()
