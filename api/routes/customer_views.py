"""The read side's customer projections: UserView and UserStatistics (CQRS's query side; the
customers service answers the commands and ``GET /customers/{id}``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.auth import CallerDep, OperatorWhenAuth
from api.deps import ReadDep
from api.errors import AUTH_RESPONSES, ERROR_RESPONSES, CustomerNotFound
from cloudmart.contracts.text import CustomerId
from services.readmodel.customer_stats import ACTIVE_WINDOW_DAYS
from services.readmodel.queries import CustomerStatistics, CustomerView

router = APIRouter(responses={**ERROR_RESPONSES, **AUTH_RESPONSES})

MAX_DAYS = 366


@router.get("/customers/{customer_id}/view", response_model=CustomerView, tags=["customers"])
def customer_view(
    customer_id: Annotated[CustomerId, Path()], read: ReadDep, caller: CallerDep
) -> CustomerView:
    """The customer at a glance, from the read side's UserView projection: profile (null once
    erased), account status, orders by status, lifetime spend, last order, loyalty points and
    favourite categories. A customer id that placed orders but never registered shows
    ``registered: false``. Behind the events by the projection lag. A customer token sees its
    own customer only (404 for any other, as for a customer no event has named)."""
    if not caller.sees(customer_id):
        raise CustomerNotFound(customer_id)
    view = read.customer(customer_id)
    if view is None:
        raise CustomerNotFound(customer_id)
    return view


@router.get("/stats/customers", response_model=CustomerStatistics, tags=["stats"])
def customer_stats(
    read: ReadDep,
    _: OperatorWhenAuth,
    days: Annotated[
        int,
        Query(ge=1, le=MAX_DAYS, description="days of new customers, ending on as_of"),
    ] = ACTIVE_WINDOW_DAYS,
) -> CustomerStatistics:
    """The customers dashboard, from the read side's UserStatistics projection: new customers
    per day, active customers (an order placed within the 30 days ending on ``as_of``, the
    data's latest day), repeat-purchase rate (customers with two or more completed orders over
    those with one or more) and average order value (completed orders). Business-wide figures:
    the operator's alone when customer tokens are required."""
    return read.customer_stats(days)
