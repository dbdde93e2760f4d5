"""Customers: register, read (now or as of a point), change, close and erase an account; and
the loyalty account. The commands go straight to the customers service (no saga: each is one
aggregate's change); ``GET /customers/{id}`` folds the customer's own events (the read side's
view is ``GET /customers/{id}/view``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Body, Header, Path, status

from api.auth import Caller, CallerDep, Operator
from api.deps import State
from api.errors import AUTH_RESPONSES, ERROR_RESPONSES, ApiError, CustomerNotFound, ErrorBody
from api.headers import idempotency_key
from api.query_params import AsOfQuery, parse_as_of
from api.tokens import mint
from cloudmart.contracts.customers import (
    CloseAccount,
    Customer,
    CustomerRegistered,
    RegisterCustomer,
    UpdateProfile,
)
from cloudmart.contracts.failures import AccountClosed, EmailTaken
from cloudmart.contracts.text import CustomerId
from services.customers.service import StaleVersion, UnknownCustomer
from services.event_store.as_of import events_as_of
from services.event_store.store import ConcurrencyConflict
from services.loyalty.account import Statement

router = APIRouter(
    prefix="/customers", tags=["loyalty"], responses={**ERROR_RESPONSES, **AUTH_RESPONSES}
)

CustomerPath = Annotated[CustomerId, Path()]


class NotACustomer(ApiError):
    """An id no account was opened under, or another customer's: the same answer, so that
    others' ids cannot be probed."""

    status_code = status.HTTP_404_NOT_FOUND

    def __init__(self, customer_id: str) -> None:
        super().__init__(f"{customer_id} is not a registered customer")


class NotYetACustomer(ApiError):
    status_code = status.HTTP_404_NOT_FOUND

    def __init__(self, customer_id: str) -> None:
        super().__init__(f"{customer_id} was not registered yet at that point (as_of)")


class CustomerConflict(ApiError):
    """The account's state refuses the change (closed, the e-mail taken, a racing write)."""

    status_code = status.HTTP_409_CONFLICT


class StaleCustomer(ApiError):
    status_code = status.HTTP_412_PRECONDITION_FAILED


CONFLICTS: dict[int | str, dict[str, object]] = {
    status.HTTP_409_CONFLICT: {
        "model": ErrorBody,
        "description": "The e-mail belongs to another account, the account is closed, or "
        "another change of the customer was stored at the same time",
    },
    status.HTTP_412_PRECONDITION_FAILED: {
        "model": ErrorBody,
        "description": "If-Match names a version the customer has moved past: read it again",
    },
}

RegistrationKey = Annotated[
    str | None,
    idempotency_key(
        "A random value (at least 16 characters): a retry with it and the same e-mail answers "
        "the same customer, with a fresh token. Keep it as secret as the token.",
        min_length=16,
    ),
]
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=20,
        pattern=r'^"?[0-9]{1,18}"?$',
        description="The customer's version the change is based on (``version`` in its last "
        "answer): a 412 if it has moved on since.",
    ),
]


@contextmanager
def _refusals(customer_id: str) -> Iterator[None]:
    """The customers service's refusals as the API answers them."""
    try:
        yield
    except UnknownCustomer:
        raise NotACustomer(customer_id) from None
    except (EmailTaken, AccountClosed) as err:
        raise CustomerConflict(str(err)) from None
    except StaleVersion as err:
        raise StaleCustomer(str(err)) from None
    except ConcurrencyConflict:
        raise CustomerConflict(
            f"customer {customer_id} was changed elsewhere at the same time; read it and retry"
        ) from None


def _own(caller: Caller, customer_id: str) -> None:
    if not caller.sees(customer_id):
        raise NotACustomer(customer_id)


def _acting(caller: Caller, customer_id: str) -> str:
    """Who the events record: the operator's name, or the customer (also while tokens are
    off, when whoever calls acts as the customer)."""
    return caller.name if caller.operator else customer_id


def _version(if_match: str | None) -> int | None:
    return None if if_match is None else int(if_match.strip('"'))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CustomerRegistered,
    tags=["customers"],
    responses={status.HTTP_409_CONFLICT: CONFLICTS[status.HTTP_409_CONFLICT]},
)
def register(
    body: RegisterCustomer, state: State, idempotency_key: RegistrationKey = None
) -> CustomerRegistered:
    """Open an account: anyone may. The e-mail (case aside) must not belong to another open
    or closed account (409). The answer carries the customer, and their bearer token when the
    API requires tokens (CLOUDMART_REQUIRE_AUTH); orders then name ``customer_id``."""
    with _refusals(""):
        customer = state.customers.register(body, idempotency_key=idempotency_key)
    token = None
    if state.settings.require_auth:
        assert state.settings.auth_secret is not None  # the API does not start without it
        token = mint(customer.customer_id, state.settings.auth_secret.get_secret_value())
    return CustomerRegistered(customer=customer, token=token)


@router.get("/{customer_id}", response_model=Customer, tags=["customers"])
def get_customer(
    customer_id: CustomerPath, state: State, caller: CallerDep, as_of: AsOfQuery = None
) -> Customer:
    """The customer, folded from their events in the event store: status, profile (null once
    erased), version. With ``as_of``, as they stood then: the events up to that sequence
    number, or that occurred at or before that time. A customer id that was never registered
    (orders may still name it) is a 404, as is another customer's with a customer token."""
    point = parse_as_of(as_of)  # a bad value is the client's error whoever asks
    _own(caller, customer_id)
    customers = state.customers
    if not customers.is_registered(customer_id):
        raise NotACustomer(customer_id)
    events = events_as_of(customers.history(customer_id), point)
    if not events:
        raise NotYetACustomer(customer_id)
    return customers.fold(customer_id, events)


@router.patch("/{customer_id}", response_model=Customer, tags=["customers"], responses=CONFLICTS)
def update_profile(
    customer_id: CustomerPath,
    change: UpdateProfile,
    state: State,
    caller: CallerDep,
    if_match: IfMatch = None,
) -> Customer:
    """Change the name, e-mail or address of an open account (the customer's own, or any as
    the operator). 409 for a closed account or an e-mail another account has; 412 if
    ``If-Match`` names an older version. The same values again change nothing."""
    _own(caller, customer_id)
    with _refusals(customer_id):
        return state.customers.update_profile(
            customer_id,
            change,
            expected_version=_version(if_match),
            by=_acting(caller, customer_id),
        )


@router.post(
    "/{customer_id}/close", response_model=Customer, tags=["customers"], responses=CONFLICTS
)
def close_account(
    customer_id: CustomerPath,
    state: State,
    caller: CallerDep,
    body: Annotated[CloseAccount | None, Body()] = None,
    if_match: IfMatch = None,
) -> Customer:
    """Close the account (the customer's own, or any as the operator): it places no more
    orders and takes no changes, and keeps its e-mail. Closing it again changes nothing."""
    _own(caller, customer_id)
    reason = (body or CloseAccount()).reason
    with _refusals(customer_id):
        return state.customers.close(
            customer_id,
            reason,
            expected_version=_version(if_match),
            by=_acting(caller, customer_id),
        )


@router.post("/{customer_id}/erase", response_model=Customer, tags=["customers"])
def erase(customer_id: CustomerPath, state: State, caller: Operator) -> Customer:
    """The right to be forgotten (operator only): destroy the customer's key, so the personal
    data in every event of theirs is unreadable for good, free their e-mail, and record
    ``CustomerErased``. The events, orders, money and stock records stay. Erasing again
    changes nothing (docs/customers.md)."""
    with _refusals(customer_id):
        return state.customers.erase(customer_id, by=caller.name)


@router.get("/{customer_id}/loyalty", response_model=Statement)
def loyalty(customer_id: CustomerPath, state: State, caller: CallerDep) -> Statement:
    """The customer's points and the latest entries of their account (at most 100, oldest
    first; a customer with none has 0 points). Loyalty
    follows the order events on its own, so a just-completed order may count a moment later.
    A customer token sees its own customer's account only (404 for any other)."""
    if not caller.sees(customer_id):
        raise CustomerNotFound(customer_id)
    return state.loyalty.statement(customer_id)
