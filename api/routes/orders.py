"""Orders: place one (starts its saga), read its state, list them, cancel, review payment, and
an operator's actions on a stuck order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status
from pydantic import AwareDatetime
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from api.auth import Caller, CallerDep, Credentials, Operator, get_caller
from api.deps import AppState, ReadDep, SagasDep, State
from api.errors import (
    AUTH_RESPONSES,
    ERROR_RESPONSES,
    ApiError,
    ClientGone,
    Forbidden,
    OrderNotFound,
    Unavailable,
    UnprocessableField,
)
from api.headers import idempotency_key
from api.query_params import AsOfQuery, parse_as_of, utc_query
from api.sagas import Sagas
from api.tokens import STATIC_OPERATOR, mint
from cloudmart.contracts.events import Event, EventType, StoredEvent
from cloudmart.contracts.orders import (
    AbortOrder,
    CancelOrder,
    OrderAccepted,
    OrderState,
    OrderStatus,
    OrderView,
    PaymentReviewDecision,
    PlaceOrder,
    ResolveCompensation,
    UpdateAccepted,
    guest_customer_id,
)
from cloudmart.contracts.text import CustomerId
from cloudmart.settings import Settings
from cloudmart.temporal import is_unreachable
from services.event_store.aggregate import replay
from services.event_store.as_of import OrderAsOf, order_as_of
from services.readmodel.queries import InvalidCursor, OrderListing

log = logging.getLogger("cloudmart.api")

T = TypeVar("T")

router = APIRouter(
    prefix="/orders", tags=["orders"], responses={**ERROR_RESPONSES, **AUTH_RESPONSES}
)

IdempotencyKey = Annotated[
    str | None,
    idempotency_key("Retrying with the same key returns the same order; never a second saga."),
]

MAX_WAIT = 60
"""Seconds a ``GET /orders/{id}?wait=`` may hold its connection: under the idle timeouts of
common proxies and load balancers, so a wait ends with an answer rather than a dropped line."""

Wait = Annotated[
    float,
    Query(
        ge=0,
        le=MAX_WAIT,
        allow_inf_nan=False,
        description="Seconds (0 to 60) to wait for the saga to end before answering; "
        "0 answers at once.",
    ),
]


async def _placing_caller(credentials: Credentials, state: State) -> Caller | None:
    """Who places an order: as for every route, except that no token at all is None here
    rather than a 401, since a guest checkout needs none (a customer's order still does)."""
    if credentials is None and state.settings.require_auth:
        return None
    return await get_caller(credentials, state)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OrderAccepted,
    # The token is optional here even while tokens are required: a guest checkout needs none.
    openapi_extra={"security": [{}]},
)
async def place_order(
    order: PlaceOrder,
    response: Response,
    sagas: SagasDep,
    app: State,
    caller: Annotated[Caller | None, Depends(_placing_caller)],
    request: Request,
    idempotency_key: IdempotencyKey = None,
    wait: Wait = 0,
) -> OrderAccepted:
    """Start the order's saga. Amounts come from the catalog, never from the request. The body
    names ``customer_id`` or, for a guest checkout, ``guest`` (name and email), never both (422).
    With a customer token, ``customer_id`` must be the token's customer (403 otherwise). A guest
    checkout needs no token: its saga opens the guest's account first, under a customer id the
    API derives from the order id (``customer_id`` in the answer), and while the API requires
    tokens the answer carries that customer's token (``customer_token``), to follow or cancel
    the order with.

    With ``wait`` (seconds, at most 60), the answer also waits for the saga to end, as
    ``GET /orders/{id}?wait=`` does, and carries its ``state``: the final one if it ended in
    time, else its current one (say, awaiting a payment review). The order is placed either
    way: a 202 whose ``state`` is absent when no worker could say. With an
    ``Idempotency-Key``, a retry waits on the order the key placed."""
    if order.guest is None:
        if caller is None:
            caller = await get_caller(None, app)  # its 401: a customer's order needs a token
        if not caller.sees(order.customer_id):
            raise Forbidden("customer_id: a customer token may place orders only for its customer")
    accepted = await sagas.place(order, idempotency_key)
    if order.guest is not None:
        accepted = accepted.model_copy(
            update={"customer_token": _guest_token(app.settings, accepted.order_id)}
        )
    response.headers["Location"] = f"/orders/{accepted.order_id}"
    if not wait:
        return accepted
    state = await _unless_client_leaves(request, _state_after(sagas, accepted.order_id, wait))
    if state is None:
        return accepted
    view = OrderView.model_validate(state.model_dump())  # as GET /orders/{id} shows it
    return accepted.model_copy(update={"status": state.status, "state": view})


def _guest_token(settings: Settings, order_id: str) -> str | None:
    """The guest's customer token, while the API requires tokens: the same customer for every
    retry of the order (its id is derived from the order's), a fresh token each time."""
    if not settings.require_auth or settings.auth_secret is None:
        return None
    return mint(guest_customer_id(order_id), settings.auth_secret.get_secret_value())


async def _state_after(sagas: Sagas, order_id: str, wait: float) -> OrderState | None:
    """The placed order's final state within ``wait``, or its current one; None if it cannot be
    read (no worker answers, say), rather than an error that would make the order look
    unplaced."""
    try:
        return await sagas.ended_state(order_id, wait) or await sagas.state(order_id)
    except ApiError as err:
        log.warning("order %s placed; its state could not be read: %s", order_id, err)
        return None


@router.get("", response_model=OrderListing)
def list_orders(
    read: ReadDep,
    caller: CallerDep,
    status_filter: Annotated[OrderStatus | None, Query(alias="status")] = None,
    customer_id: Annotated[CustomerId | None, Query()] = None,
    created_from: Annotated[AwareDatetime | None, Query(description="inclusive")] = None,
    created_to: Annotated[AwareDatetime | None, Query(description="exclusive")] = None,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> OrderListing:
    """Orders from the read side (the ``order_summary`` projection), newest first; pass
    ``next_cursor`` back as ``cursor`` for the next page. The projection follows the events
    within the lag ``/healthz`` reports: a just-placed order may appear a moment later.
    A customer token lists its customer's orders only (403 for another ``customer_id``)."""
    if caller.customer_id is not None:
        if customer_id not in (None, caller.customer_id):
            raise Forbidden("customer_id: a customer token may list only its customer's orders")
        customer_id = caller.customer_id
    try:
        return read.orders(
            status=status_filter,
            customer_id=customer_id,
            created_from=utc_query(created_from, "created_from"),
            created_to=utc_query(created_to, "created_to"),
            limit=page_size,
            cursor=cursor,
        )
    except InvalidCursor as err:
        raise UnprocessableField(("query", "cursor"), str(err), "invalid_cursor") from err


@router.get("/{order_id}/events", response_model=list[Event])
async def order_events(
    order_id: UUID, state: State, sagas: SagasDep, caller: CallerDep
) -> list[Event]:
    """The order's event timeline from the event store, oldest first. The saga stores its
    events in batches (before it waits for a person, when a step fails or runs past the events
    window, and at its end: docs/events-and-cqrs.md), so a running order may answer ``[]``."""
    events = await _stored_events(state, sagas, caller, order_id)
    return [Event.model_validate(e.model_dump(include=set(Event.model_fields))) for e in events]


@router.get("/{order_id}/state", response_model=OrderAsOf)
async def order_state_as_of(
    order_id: UUID, state: State, sagas: SagasDep, caller: CallerDep, as_of: AsOfQuery = None
) -> OrderAsOf:
    """The order as it stood at ``as_of``: the fold of its events in the event store up to
    then (upcast to their current versions), never the live saga's answer. ``state`` is null
    when nothing had been stored by then: before the order was placed, or while its saga has
    not stored its first events. Access as for ``/events``: another customer's order is 404."""
    point = parse_as_of(as_of)  # a bad value is the client's error whatever the order
    events = await _stored_events(state, sagas, caller, order_id)
    return order_as_of(str(order_id), events, point)


async def _stored_events(
    state: AppState, sagas: Sagas, caller: Caller, order_id: UUID
) -> list[StoredEvent]:
    """The order's stored events, once the caller may see them (404 as for an unknown order)."""
    # Both lookups, every time, side by side: another customer's order and an unknown one must
    # cost the same, or how long the 404 takes tells which it is (asking the saga only when
    # nothing was stored made an unknown order's 404 about 2 ms slower).
    events, saga = await asyncio.gather(
        run_in_threadpool(state.events.stream, str(order_id)), _owner_or_error(sagas, order_id)
    )
    if events:
        # The first event, OrderPlaced, names the customer; the store outlives Temporal's
        # retention (and its outages), so the saga's answer is not needed then.
        owner = _placed_by(events[0])
    elif isinstance(saga, Exception):
        raise saga  # not stored yet, and no saga either (404), or Temporal is unreachable
    else:
        owner = saga  # not stored yet: the saga says whose it is
    if not caller.sees(owner):  # another's order is as unknown as none
        raise OrderNotFound(str(order_id))
    return events


async def _owner_or_error(sagas: Sagas, order_id: UUID) -> str | Exception | None:
    """The saga's customer, or why it cannot be had (no such saga, Temporal unreachable)."""
    try:
        return await sagas.owner(str(order_id))
    except Exception as err:  # the caller decides whether it matters
        return err


@router.get("/{order_id}", response_model=OrderView)
async def get_order(
    order_id: UUID,
    sagas: SagasDep,
    state: State,
    caller: CallerDep,
    request: Request,
    wait: Wait = 0,
) -> OrderState:
    """The saga's live state: status, every step and compensation, total, failure.

    With ``wait`` (seconds, at most 60) this is a long-poll: while the saga is still running,
    the answer waits until it ends and is its final state (COMPLETED, FAILED or CANCELLED), in
    one request; if it has not ended within ``wait`` seconds, the answer is its current state,
    as without ``wait``. It waits for the end, not for a review hold: an order awaiting payment
    review answers its current state after ``wait``. An order that has already ended answers
    at once, and an unknown one is a 404 at once. ``wait=0`` (the default): the live state at
    once.

    When the saga cannot be asked (Temporal or its workers unreachable), the answer is the
    fold of the order's stored events, with ``source`` ``event_store`` and the sequence it
    reflects; with nothing stored for the order, the 503 as before."""
    try:
        await _check_owner(sagas, caller, str(order_id))
        if not wait:
            return await sagas.state(str(order_id))
        return await _unless_client_leaves(request, sagas.final_state(str(order_id), wait))
    except Exception as err:
        if not (isinstance(err, Unavailable) or is_unreachable(err)):
            raise
        folded = await _folded(state, caller, str(order_id))
        if folded is None:
            raise
        log.info("order %s read from the event store: %s", order_id, err)
        return folded


async def _folded(state: AppState, caller: Caller, order_id: str) -> OrderView | None:
    """The order's state folded from its stored events, for when the saga cannot say; None
    when nothing is stored, the order is not the caller's, or the store cannot be read either.

    None answers the saga's own error (a 503), so another customer's order reads exactly like
    an unknown one: one lookup in the store, then the same 503."""
    try:
        events = await run_in_threadpool(state.events.stream, order_id)
    except SQLAlchemyError as err:
        log.warning("order %s: the event store cannot be read either: %s", order_id, err)
        return None
    if not events or not caller.sees(_placed_by(events[0])):
        return None
    order = replay(order_id, events)
    assert order.updated_at is not None  # at least one event was folded
    return OrderView(
        order_id=order_id,
        customer_id=order.customer_id,
        status=order.status,
        items=order.items,
        total_cents=order.total_cents,
        tracking_number=order.tracking_number,
        failure=order.failure,
        cancel_reason=order.cancel_reason,
        created_at=order.placed_at or order.updated_at,
        updated_at=order.updated_at,
        source="event_store",
        as_of_sequence=order.version,
    )


@router.post("/{order_id}/cancel", status_code=status.HTTP_202_ACCEPTED)
async def cancel_order(
    order_id: UUID,
    sagas: SagasDep,
    caller: CallerDep,
    request: Annotated[CancelOrder | None, Body()] = None,
) -> UpdateAccepted:
    """Cancel until the shipment is created (409 with the reason after that)."""
    await _check_owner(sagas, caller, str(order_id))  # before the saga hears of it
    # An operator's cancel is recorded under the operator's name; without one, the saga
    # records the order's customer.
    by = caller.name if caller.operator else None
    return await sagas.cancel(str(order_id), request or CancelOrder(), by=by)


@router.post("/{order_id}/payment-review", status_code=status.HTTP_202_ACCEPTED)
async def review_payment(
    order_id: UUID, decision: PaymentReviewDecision, sagas: SagasDep, operator: Operator
) -> UpdateAccepted:
    """Approve or reject a payment held for fraud review (409 unless it is awaiting one).
    An operator action: the operator's bearer token only."""
    return await sagas.review_payment(str(order_id), decision, by=_operator_name(operator))


@router.post("/{order_id}/compensation/retry", status_code=status.HTTP_202_ACCEPTED)
async def retry_compensation(order_id: UUID, sagas: SagasDep, _: Operator) -> UpdateAccepted:
    """Retry the order's stuck compensation now rather than at its next backoff (409 unless
    the order is COMPENSATION_STUCK). An operator action."""
    return await sagas.retry_compensation(str(order_id))


@router.post("/{order_id}/compensation/resolve", status_code=status.HTTP_202_ACCEPTED)
async def resolve_compensation(
    order_id: UUID, resolution: ResolveCompensation, sagas: SagasDep, operator: Operator
) -> UpdateAccepted:
    """Mark the stuck compensation as done by hand, with a note saying how; the saga records
    it (history and event store) and goes on with the rest. 409 unless ``step`` is the stuck
    one, or if it succeeded on its own meanwhile. An operator action."""
    return await sagas.resolve_compensation(str(order_id), resolution, by=_operator_name(operator))


@router.post("/{order_id}/step/retry", status_code=status.HTTP_202_ACCEPTED)
async def retry_step(order_id: UUID, sagas: SagasDep, operator: Operator) -> UpdateAccepted:
    """Retry the order's stuck step now rather than at its next backoff (409 unless the order is
    STEP_STUCK). An operator action, recorded as StepRetried under the operator's name."""
    return await sagas.retry_step(str(order_id), by=_operator_name(operator))


@router.post("/{order_id}/abort", status_code=status.HTTP_202_ACCEPTED)
async def abort_order(
    order_id: UUID,
    sagas: SagasDep,
    operator: Operator,
    request: Annotated[AbortOrder | None, Body()] = None,
) -> UpdateAccepted:
    """Give up on the order's stuck step: the order fails (AbortedByOperator) and what was done
    is compensated, in reverse. 409 unless the order is STEP_STUCK, or once its shipment exists.
    An operator action, recorded as OrderAborted under the operator's name."""
    return await sagas.abort(str(order_id), request or AbortOrder(), by=_operator_name(operator))


def _operator_name(caller: Caller) -> str | None:
    """Who decided a review, a resolution, a retry or an abort, for the order's events: a named
    operator's name. None for the static token's operator, whom the saga records as ``operator``
    without one: the update's body stays as workers from before named operators expect it."""
    if caller.operator and caller.name != STATIC_OPERATOR:
        return caller.name
    return None


async def _check_owner(sagas: Sagas, caller: Caller, order_id: str) -> None:
    """404 for another customer's order, exactly as for an unknown one. The owner comes from
    the saga's CustomerId search attribute (Temporal's server, not a worker), so the answer
    does not depend on whether a worker is up either."""
    if caller.customer_id is not None and await sagas.owner(order_id) != caller.customer_id:
        raise OrderNotFound(order_id)


async def _unless_client_leaves(request: Request, answer: Coroutine[Any, Any, T]) -> T:
    """``answer``, unless the client disconnects first: then it is cancelled, and so is the
    long-poll behind it. (The server does not cancel a request whose client left; a wait of a
    minute per abandoned request would pile up.)"""
    answering = asyncio.ensure_future(answer)
    leaving = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((answering, leaving), return_when=asyncio.FIRST_COMPLETED)
    finally:
        leaving.cancel()
        if not answering.done():
            answering.cancel()
            await asyncio.wait((answering,))  # its RPC dropped before the request ends
    if answering.cancelled():
        log.info("%s %s: the client left while waiting", request.method, request.url.path)
        raise ClientGone("the client closed the connection")
    return answering.result()


async def _disconnected(request: Request) -> None:
    # A GET's body is one empty message; the next message comes when the client goes away.
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _placed_by(first: Event) -> str | None:
    if first.event_type != EventType.ORDER_PLACED:
        return None
    customer = first.data.get("customer_id")
    return customer if isinstance(customer, str) else None
