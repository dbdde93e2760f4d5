"""Customers: the bodies of the ``/customers`` routes, the saga's first step, and the customer
aggregate's events.

A customer is an aggregate of its own in the event store (stream ``customer-<id>``), written only
by the customers service. Its personal data (name, e-mail, address) never lies in an event in
clear: each event carries it encrypted with that customer's own key, which the customers service
keeps in its database, so destroying the key erases the person from every event at once
(crypto-shredding, docs/customers.md).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, model_validator

from cloudmart.contracts.addresses import ShippingAddress
from cloudmart.contracts.text import PersonName, Reason

CUSTOMER_STREAM_PREFIX = "customer-"


def customer_stream(customer_id: str) -> str:
    """The event store's aggregate id of the customer's events."""
    return f"{CUSTOMER_STREAM_PREFIX}{customer_id}"


def _normalise_email(value: str) -> str:
    local, _, domain = value.rpartition("@")
    # The domain is case-insensitive (RFC 5321); the local part, strictly, is not, but no
    # mail system in use treats Ann@ and ann@ as two people: one account per mailbox.
    return f"{local}@{domain}".lower()


Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        max_length=254,
        # One @, a dotted domain, no spaces or control characters: what a mailbox looks like.
        pattern=r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+$",
    ),
    AfterValidator(_normalise_email),
]
"""An e-mail address, lower-cased: unique among open accounts."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Guest(_Request):
    """A guest checkout's details (in ``POST /orders``): the saga's first step opens an account
    for them, which Cancel User closes again if the order does not go through."""

    name: PersonName
    email: Email


class RegisterCustomer(_Request):
    """The body of ``POST /customers``."""

    name: PersonName
    email: Email
    address: ShippingAddress | None = None


class UpdateProfile(_Request):
    """The body of ``PATCH /customers/{id}``: the fields to change (at least one)."""

    name: PersonName | None = None
    email: Email | None = None
    address: ShippingAddress | None = None

    @model_validator(mode="after")
    def _something(self) -> UpdateProfile:
        if self.name is None and self.email is None and self.address is None:
            raise ValueError("nothing to change: send name, email or address")
        return self


class CloseAccount(_Request):
    """The body of ``POST /customers/{id}/close``."""

    reason: Reason = "closed by customer"


class CustomerStatus(StrEnum):
    ACTIVE = "ACTIVE"
    CLOSED = "CLOSED"
    """Closed by its owner or an operator: it places no orders."""
    CANCELLED = "CANCELLED"
    """A guest account whose only order did not go through (Cancel User)."""


class Profile(BaseModel):
    """A customer's personal data: what an event carries encrypted, and what erasure destroys."""

    model_config = ConfigDict(frozen=True)

    name: str
    email: str
    address: ShippingAddress | None = None


class Customer(BaseModel):
    """The customer aggregate: the fold of its events (``GET /customers/{id}``)."""

    customer_id: str
    status: CustomerStatus = CustomerStatus.ACTIVE
    guest: bool = False
    profile: Profile | None = None
    """None once erased: the events are still there, their personal data unreadable."""
    erased: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 0
    """The sequence number of the last event applied: what a write expects (optimistic
    concurrency on the customer's stream)."""


class CustomerRegistered(BaseModel):
    """The answer to ``POST /customers`` (201)."""

    customer: Customer
    token: str | None = None
    """The customer's bearer token, when the API requires one (CLOUDMART_REQUIRE_AUTH)."""
