"""The customers service's tables. The customer's story is its events, in the event store; these
hold what the command side needs beside them: each customer's key, the e-mail claims, the orders
each customer placed, and events decided but not yet appended to the store."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, LargeBinary
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from services.database import UtcDateTime, utcnow


class CustomersTable(SQLModel, registry=registry()):
    """Base of the customers service's tables: their own metadata, in their own database."""


class CustomerRow(CustomersTable, table=True):
    """A registered customer (or a guest's account): the row every command on it locks."""

    __tablename__ = "customers"

    customer_id: str = Field(primary_key=True, max_length=64)
    version: int = 0
    """The sequence of the customer's last event, appended or pending: the next is version + 1."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class CustomerKey(CustomersTable, table=True):
    """Each customer's own AES-256-GCM key, which seals the personal data in their events.
    Deleting the row erases the person from every event at once (crypto-shredding)."""

    __tablename__ = "customer_keys"

    customer_id: str = Field(primary_key=True, max_length=64)
    key: bytes = Field(sa_type=LargeBinary)


class EmailClaim(CustomersTable, table=True):
    """One row per e-mail in use: its primary key (a unique index) makes two open accounts with
    one address impossible, whatever races. The address is never stored, only its HMAC under
    the service's own key (``ServiceSecret``), so this table names nobody by itself."""

    __tablename__ = "email_claims"

    email_hmac: str = Field(primary_key=True, max_length=64)
    customer_id: str = Field(index=True, max_length=64)
    claimed_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class ServiceSecret(CustomersTable, table=True):
    """The service's own secrets, made on first use: the key of the e-mail claims' HMAC."""

    __tablename__ = "service_secrets"

    name: str = Field(primary_key=True, max_length=64)
    value: bytes = Field(sa_type=LargeBinary)


class OrderMark(StrEnum):
    CHECKED = "CHECKED"
    """The order's first step ran: the customer may order (``opened`` if it opened the
    account)."""
    CANCELLED = "CANCELLED"
    """Cancel User closed the account this order opened."""
    KEPT = "KEPT"
    """Cancel User ran, but the account had placed other orders: it stays."""
    TOMBSTONE = "TOMBSTONE"
    """Cancel User ran before the step: a late step for this order is refused."""


class CustomerOrder(CustomersTable, table=True):
    """Every order whose first step ran (``customers.ensure``), keyed by the order id: what
    makes the step and its compensation idempotent, and what Cancel User asks (has the account
    this order opened placed another?)."""

    __tablename__ = "customer_orders"

    order_id: str = Field(primary_key=True, max_length=64)
    customer_id: str = Field(index=True, max_length=64)
    registered: bool = False
    """The customer had an account (or this order opened one); False for a customer id that
    was never registered."""
    opened: bool = False
    """This order's guest checkout opened the account."""
    mark: str = Field(default=OrderMark.CHECKED, max_length=16)
    """An ``OrderMark``."""
    detail: str = Field(default="", max_length=500)
    """What Cancel User answered (for ALREADY_UNDONE and repeats)."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class PendingEvent(CustomersTable, table=True):
    """An event the service decided, committed with the change that caused it, and not yet in
    the event store (an outbox). Appended right after the commit, and again by whoever next
    touches the customer if the process died in between: its id and data are fixed here, so a
    second append stores nothing twice."""

    __tablename__ = "pending_events"

    customer_id: str = Field(primary_key=True, max_length=64)
    sequence: int = Field(primary_key=True)
    event: dict[str, Any] = Field(sa_type=JSON)
    """The ``Event`` as it will be appended (its JSON form)."""
