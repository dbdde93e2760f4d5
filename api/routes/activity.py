"""A customer's activity timeline and recommendations (docs/activity.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import AwareDatetime
from starlette.concurrency import run_in_threadpool

from api.activity_tracking import ActivityTracking
from api.auth import CallerDep
from api.deps import State
from api.errors import AUTH_RESPONSES, ERROR_RESPONSES, CustomerNotFound, UnprocessableField
from api.query_params import utc_query
from cloudmart.contracts.text import CustomerId
from services.activity.models import ActivityType
from services.activity.recommendations import Recommendation
from services.activity.signals import recommend
from services.activity.store import ActivityPage, InvalidCursor

router = APIRouter(
    prefix="/customers", tags=["activity"], responses={**ERROR_RESPONSES, **AUTH_RESPONSES}
)


async def get_tracking(request: Request) -> ActivityTracking:
    return request.app.state.activity


Tracking = Annotated[ActivityTracking, Depends(get_tracking)]
CustomerPath = Annotated[CustomerId, Path()]


@router.get("/{customer_id}/activity", response_model=ActivityPage)
async def customer_activity(
    customer_id: CustomerPath,
    caller: CallerDep,
    tracking: Tracking,
    types: Annotated[
        list[ActivityType] | None, Query(alias="type", description="any of these (repeatable)")
    ] = None,
    since: Annotated[AwareDatetime | None, Query(description="inclusive")] = None,
    until: Annotated[AwareDatetime | None, Query(description="exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> ActivityPage:
    """The customer's actions, newest first: searches (with their filters), product views,
    orders placed and cancelled, ratings, registration, tokens issued. Pass ``next_cursor``
    back as ``cursor`` for the next page. A customer token sees its own customer's timeline
    only (404 for any other)."""
    if not caller.sees(customer_id):
        raise CustomerNotFound(customer_id)
    since_utc, until_utc = utc_query(since, "since"), utc_query(until, "until")
    await tracking.flush()  # this process's own latest actions, before they are read
    try:
        return await run_in_threadpool(
            tracking.store.timeline,
            customer_id,
            types=types or (),
            since=since_utc,
            until=until_utc,
            limit=limit,
            cursor=cursor,
        )
    except InvalidCursor as err:
        raise UnprocessableField(("query", "cursor"), str(err), "invalid_cursor") from err


@router.get("/{customer_id}/recommendations", response_model=list[Recommendation])
async def customer_recommendations(
    customer_id: CustomerPath,
    caller: CallerDep,
    state: State,
    tracking: Tracking,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> list[Recommendation]:
    """Products in stock the customer has not bought, best first, each with the reasons:
    bought by customers who bought the same things, viewed, in a category the customer
    searched or bought from. A customer token sees its own customer's only (404 for any
    other)."""
    if not caller.sees(customer_id):
        raise CustomerNotFound(customer_id)
    await tracking.flush()
    return await run_in_threadpool(
        recommend,
        customer_id,
        store=tracking.store,
        events=state.events.engine,
        read=state.read,
        limit=limit,
    )
