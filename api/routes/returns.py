"""Returns, a choreographed saga (docs/returns.md): request one, inspect its parcel, read its
chain; and the operator's view of the choreography's dead letters.

The API only records the two events people cause, ``ReturnRequested`` (the customer) and
``ReturnAccepted``/``ReturnRejected`` (the warehouse's inspection), appending them to the
order's returns stream itself, as it does ratings. Every other step is a service's reaction
(services/<service>/returns.py), run by the worker's return consumers.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query, Response, status

from api.auth import Caller, CallerDep, Operator
from api.deps import AppState, State
from api.errors import (
    AUTH_RESPONSES,
    ERROR_RESPONSES,
    ApiError,
    OrderConflict,
    OrderNotFound,
    UnprocessableField,
)
from api.headers import idempotency_key
from cloudmart.contracts.events import Event, EventType, StoredEvent
from cloudmart.contracts.returns import (
    CONSUMER_DATABASE,
    CONSUMERS,
    PUBLISHED_BY,
    STEPS,
    VERSION,
    ChainLink,
    Inspection,
    PricedLine,
    RequestReturn,
    ReturnAccepted,
    ReturnEvent,
    ReturnStatus,
    ReturnView,
    Waiting,
    amount_of,
    carried,
    returns_stream,
)
from services.choreography import dead_letters, progress
from services.database import utcnow
from services.event_store.store import ConcurrencyConflict, EventStore, OutOfOrder
from services.factory import CHOREOGRAPHY

router = APIRouter(tags=["returns"], responses={**ERROR_RESPONSES, **AUTH_RESPONSES})

APPEND_ATTEMPTS = 5
"""Appends tried when other events of the order's returns keep taking the next sequence."""
NAMESPACE = uuid.UUID("c7d1e5a2-8b3f-4e60-9d2a-41f0b6c3e8d7")


class ReturnNotFound(ApiError):
    status_code = status.HTTP_404_NOT_FOUND

    def __init__(self, return_id: str) -> None:
        super().__init__(f"return {return_id} not found")


class ReturnConflict(ApiError):
    status_code = status.HTTP_409_CONFLICT


class NotParkedHere(ApiError):
    status_code = status.HTTP_404_NOT_FOUND


# --- requesting a return ---------------------------------------------------------------------


ReturnKey = Annotated[
    str | None,
    idempotency_key("Retrying with the same key answers the same return; never a second one."),
]


@router.post(
    "/orders/{order_id}/returns",
    status_code=status.HTTP_201_CREATED,
    response_model=ReturnAccepted,
    tags=["orders"],
)
def request_return(
    order_id: UUID,
    request: RequestReturn,
    response: Response,
    state: State,
    caller: CallerDep,
    idempotency_key: ReturnKey = None,
) -> ReturnAccepted:
    """Return lines of a COMPLETED order, within the return window (30 days after it completed
    by default): 201 with the return's id, to follow at ``GET /returns/{id}``. The customer's
    own order only (another's is a 404, as for cancel). 409 unless the order has completed, or
    past the window; 422 naming the line for a product the order did not have, or more than
    was bought minus what its other returns (not rejected ones) already take back. With an
    ``Idempotency-Key``, a retry (its answer lost, say) answers the return the key opened, as
    it stands now; the same key with other lines or reason is a 422."""
    events = state.events.stream(str(order_id))
    if not events or not caller.sees(_placed_by(events[0])):
        raise OrderNotFound(str(order_id))
    stream = returns_stream(str(order_id))
    keyed = None if idempotency_key is None else _keyed_id(order_id, idempotency_key)
    for _ in range(APPEND_ATTEMPTS):
        returns = state.events.stream(stream)
        if keyed is not None and (earlier := _requested(returns, keyed)) is not None:
            return _again(state, earlier, request, caller, response)
        bought = _returnable(state, order_id, events, request)
        returned = _returned(returns)
        for index, line in enumerate(request.lines):
            quantity, _price = bought[line.sku]
            left = quantity - returned[line.sku]
            if line.quantity > left:
                _refuse(
                    index,
                    "quantity",
                    f"at most {left} of {line.sku} left to return (bought {quantity}, "
                    f"{returned[line.sku]} in other returns)",
                    "less_than_equal",
                )
        return_id = keyed or str(uuid.uuid4())
        lines = [
            PricedLine(sku=line.sku, quantity=line.quantity, unit_price_cents=bought[line.sku][1])
            for line in request.lines
        ]
        data = {
            "return_id": return_id,
            "order_id": str(order_id),
            "customer_id": _placed_by(events[0]) or "",
            "lines": [line.model_dump() for line in lines],
            "amount_cents": amount_of(lines),
            "reason": request.reason,
        }
        # Two racing requests with one key take the same sequence: the later one is refused
        # by the store and, looking again, answers the earlier one's return.
        requested = _event(stream, returns, ReturnEvent.RETURN_REQUESTED, data, caller, None)
        try:
            state.events.append([requested])
        except (ConcurrencyConflict, OutOfOrder):
            continue  # another return of the order came first: look again
        response.headers["Location"] = f"/returns/{return_id}"
        return ReturnAccepted(
            return_id=return_id,
            order_id=str(order_id),
            status=ReturnStatus.REQUESTED,
            lines=lines,
            amount_cents=amount_of(lines),
        )
    raise ReturnConflict(f"order {order_id}'s returns are busy; try again")


def _keyed_id(order_id: UUID, idempotency_key: str) -> str:
    """The return an ``Idempotency-Key`` opens on this order (only its customer and operators
    may request one, so the order scopes the key)."""
    return str(uuid.uuid5(NAMESPACE, f"{order_id}/returns/{idempotency_key}"))


def _requested(returns: Sequence[StoredEvent], return_id: str) -> StoredEvent | None:
    return next(
        (
            e
            for e in returns
            if e.event_type == ReturnEvent.RETURN_REQUESTED and e.data["return_id"] == return_id
        ),
        None,
    )


def _again(
    state: AppState,
    earlier: StoredEvent,
    request: RequestReturn,
    caller: Caller,
    response: Response,
) -> ReturnAccepted:
    """The answer to a retry: the return the key opened, if the request is the same."""
    asked = [(line.sku, line.quantity) for line in request.lines]
    opened = [(line["sku"], line["quantity"]) for line in earlier.data["lines"]]
    if (asked, request.reason) != (opened, earlier.data["reason"]):
        raise UnprocessableField(
            ("header", "Idempotency-Key"),
            "this Idempotency-Key was already used with a different request body",
            "idempotency_conflict",
        )
    return_id = earlier.data["return_id"]
    response.headers["Location"] = f"/returns/{return_id}"
    return ReturnAccepted(
        return_id=return_id,
        order_id=earlier.data["order_id"],
        status=_view(state, return_id, caller).status,
        lines=[PricedLine(**line) for line in earlier.data["lines"]],
        amount_cents=earlier.data["amount_cents"],
    )


def _returnable(
    state: AppState, order_id: UUID, events: Sequence[StoredEvent], request: RequestReturn
) -> dict[str, tuple[int, int]]:
    """What the order bought, per sku, once it is sure the request may return from it: the
    order completed within the window, and each line names a product it bought, once."""
    completed = next((e for e in events if e.event_type == EventType.ORDER_COMPLETED), None)
    if completed is None:
        raise OrderConflict(
            f"order {order_id} has not completed: only a completed order's lines can be returned"
        )
    if utcnow() - completed.occurred_at > state.settings.return_window:
        days = state.settings.return_window.total_seconds() / 86400
        raise OrderConflict(
            f"order {order_id} completed on {completed.occurred_at.date().isoformat()}: past "
            f"the return window of {days:g} days"
        )
    bought = _bought(events)
    skus = [line.sku for line in request.lines]
    for index, line in enumerate(request.lines):
        if skus.index(line.sku) != index:
            _refuse(index, "sku", f"{line.sku} is listed twice", "value_error")
        if line.sku not in bought:
            _refuse(index, "sku", f"order {order_id} has no {line.sku}", "value_error")
    return bought


def _refuse(index: int, field: str, detail: str, error_type: str) -> None:
    raise UnprocessableField(("body", "lines", index, field), detail, error_type)  # type: ignore[arg-type]


def _placed_by(first: Event) -> str | None:
    if first.event_type != EventType.ORDER_PLACED:
        return None
    customer = first.data.get("customer_id")
    return customer if isinstance(customer, str) else None


def _bought(events: Sequence[StoredEvent]) -> dict[str, tuple[int, int]]:
    """Per sku, the units the order's saga committed and their unit price."""
    bought: dict[str, tuple[int, int]] = {}
    for event in events:
        if event.event_type == EventType.INVENTORY_COMMITTED:
            for line in event.data["lines"]:
                quantity = bought.get(line["sku"], (0, 0))[0] + line["quantity"]
                bought[line["sku"]] = (quantity, line["unit_price_cents"])
    return bought


def _returned(returns: Sequence[StoredEvent]) -> Counter[str]:
    """Per sku, the units the order's returns take back: every one requested, but rejected."""
    rejected = {e.data["return_id"] for e in returns if e.event_type == ReturnEvent.RETURN_REJECTED}
    returned: Counter[str] = Counter()
    for event in returns:
        if (
            event.event_type == ReturnEvent.RETURN_REQUESTED
            and event.data["return_id"] not in rejected
        ):
            for line in event.data["lines"]:
                returned[line["sku"]] += line["quantity"]
    return returned


def _event(
    stream: str,
    after: Sequence[StoredEvent],
    event_type: str,
    data: dict[str, Any],
    caller: Caller,
    cause: StoredEvent | None,
    event_id: str | None = None,
) -> Event:
    return Event(
        event_id=event_id or str(uuid.uuid4()),
        aggregate_id=stream,
        sequence=(after[-1].sequence if after else 0) + 1,
        event_type=event_type,
        data=data,
        version=VERSION,
        occurred_at=utcnow(),
        user_id=caller.name,
        correlation_id=data["return_id"],
        causation_id=cause.event_id if cause else None,
    )


# --- inspecting its parcel -------------------------------------------------------------------


@router.post(
    "/returns/{return_id}/inspection",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ReturnView,
)
def inspect_return(
    return_id: UUID, inspection: Inspection, state: State, operator: Operator
) -> ReturnView:
    """The warehouse's verdict on the returned parcel (an operator action): accepted, the
    lines are restocked, refunded and their points revoked; rejected, the parcel goes back to
    the customer and nothing is refunded. 409 before shipping has labelled the parcel, or once
    inspected. Answers the return as it then stands (the services react within moments)."""
    for _ in range(APPEND_ATTEMPTS):
        chain = _chain(state.events, str(return_id))
        inspected = [
            e
            for e in chain
            if e.event_type in (ReturnEvent.RETURN_ACCEPTED, ReturnEvent.RETURN_REJECTED)
        ]
        if inspected:
            raise ReturnConflict(
                f"return {return_id} was already inspected ({inspected[0].event_type})"
            )
        label = next(
            (e for e in chain if e.event_type == ReturnEvent.RETURN_SHIPMENT_CREATED), None
        )
        if label is None:
            raise ReturnConflict(
                f"return {return_id} has no return label yet: its parcel cannot have arrived"
            )
        verdict = (
            ReturnEvent.RETURN_ACCEPTED if inspection.accepted else ReturnEvent.RETURN_REJECTED
        )
        data = {**carried(chain[0].data), "note": inspection.note, "by": operator.name}
        stream = chain[0].aggregate_id
        # One inspection per return: a second one, racing, has the same id and is refused.
        once = str(uuid.uuid5(NAMESPACE, f"{return_id}/inspection"))
        event = _event(stream, state.events.stream(stream), verdict, data, operator, label, once)
        try:
            state.events.append([event])
        except (ConcurrencyConflict, OutOfOrder):
            continue
        return _view(state, str(return_id), operator)
    raise ReturnConflict(f"return {return_id} is busy; try again")


# --- reading its chain -----------------------------------------------------------------------


@router.get("/returns/{return_id}", response_model=ReturnView)
def get_return(return_id: UUID, state: State, caller: CallerDep) -> ReturnView:
    """The return's chain: each event in the order the store received it, with the service
    that published it and its correlation and causation ids; its status; and where it waits
    now: for which service, and, when that service's consumer is behind (down?), keeps
    failing, or has parked the event as a dead letter, why. A customer sees only their own."""
    return _view(state, str(return_id), caller)


def _chain(store: EventStore, return_id: str) -> list[StoredEvent]:
    chain = store.correlated(return_id)
    if not chain or chain[0].event_type != ReturnEvent.RETURN_REQUESTED:
        raise ReturnNotFound(return_id)
    return chain


def _view(state: AppState, return_id: str, caller: Caller) -> ReturnView:
    chain = _chain(state.events, return_id)
    requested = chain[0].data
    if not caller.sees(requested["customer_id"]):
        raise ReturnNotFound(return_id)
    last = chain[-1]
    step = STEPS[last.event_type]
    waiting = None
    if step.service is not None:
        assert step.awaits is not None
        waiting = Waiting(service=step.service, awaits=step.awaits, consumer=step.consumer)
        if step.consumer is not None:
            database, tables = CHOREOGRAPHY[step.consumer]
            late = progress.delay(state.databases[database], tables, step.consumer, last)
            if late is not None:
                waiting = waiting.model_copy(update=late.model_dump())
    lines = [PricedLine.model_validate(line) for line in requested["lines"]]
    return ReturnView(
        return_id=return_id,
        order_id=requested["order_id"],
        customer_id=requested["customer_id"],
        status=step.status,
        stuck=step.status == ReturnStatus.REFUND_REFUSED or bool(waiting and waiting.parked),
        lines=lines,
        amount_cents=amount_of(lines),
        chain=[
            ChainLink(
                event_id=e.event_id,
                event_type=e.event_type,
                service=PUBLISHED_BY.get(e.event_type, e.user_id),
                position=e.position,
                occurred_at=e.occurred_at,
                recorded_at=e.recorded_at,
                correlation_id=e.correlation_id,
                causation_id=e.causation_id,
                data=e.data,
            )
            for e in chain
        ],
        waiting=waiting,
    )


# --- the choreography's dead letters (operators) ---------------------------------------------

ConsumerPath = Annotated[str, Path(pattern=f"^({'|'.join(CONSUMERS)})$")]


@router.get(
    "/choreography/dead-letters",
    response_model=list[dead_letters.DeliveryFailure],
    tags=["operations"],
)
def list_dead_letters(
    state: State,
    _: Operator,
    consumer: Annotated[str | None, Query(pattern=f"^({'|'.join(CONSUMERS)})$")] = None,
) -> list[dead_letters.DeliveryFailure]:
    """The events each return consumer has parked (a dead letter after its attempts), oldest
    first, with their last error: each waits for an operator to retry or skip it."""
    parked = []
    for name in CONSUMERS if consumer is None else (consumer,):
        database, tables = CHOREOGRAPHY[name]
        engine = state.databases[CONSUMER_DATABASE[name]]
        assert database == CONSUMER_DATABASE[name]
        parked += [p for p in dead_letters.parked(engine, tables) if p.consumer == name]
    return parked


@router.post(
    "/choreography/dead-letters/{consumer}/{event_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=dead_letters.DeliveryFailure,
    tags=["operations"],
)
def retry_dead_letter(
    consumer: ConsumerPath, event_id: UUID, state: State, operator: Operator
) -> dead_letters.DeliveryFailure:
    """Deliver a parked event to its consumer again (on its next run, within moments): handled,
    it leaves the dead letters; failing again, it is parked again with one more attempt."""
    return _resolve(dead_letters.request_retry, consumer, str(event_id), state, operator)


@router.post(
    "/choreography/dead-letters/{consumer}/{event_id}/skip",
    response_model=dead_letters.DeliveryFailure,
    tags=["operations"],
)
def skip_dead_letter(
    consumer: ConsumerPath, event_id: UUID, state: State, operator: Operator
) -> dead_letters.DeliveryFailure:
    """Never deliver a parked event: its consumer has moved past it, and the chain it belongs
    to stays where it is (settled by hand). Recorded with who decided."""
    return _resolve(dead_letters.skip, consumer, str(event_id), state, operator)


def _resolve(
    action: Any, consumer: str, event_id: str, state: AppState, operator: Caller
) -> dead_letters.DeliveryFailure:
    database, tables = CHOREOGRAPHY[consumer]
    try:
        resolved: dead_letters.DeliveryFailure = action(
            state.databases[database], tables, consumer, event_id, operator.name
        )
    except dead_letters.NotParked as err:
        raise NotParkedHere(str(err)) from err
    return resolved
