"""Loyalty's tables: its accounts' own events and snapshots, and its subscription's state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from services.choreography.tables import choreography_tables
from services.database import UtcDateTime


class LoyaltyTable(SQLModel, registry=registry()):
    """Base of loyalty's tables: their own metadata, in their own database."""


class AccountEvent(LoyaltyTable, table=True):
    """A loyalty account's events (its source of truth): points awarded and revoked."""

    __tablename__ = "account_events"
    __table_args__ = (UniqueConstraint("account_id", "sequence", name="one_event_per_sequence"),)

    position: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger().with_variant(Integer(), "sqlite")
    )
    event_id: str = Field(unique=True, max_length=36)
    account_id: str = Field(index=True, max_length=64)
    sequence: int
    event_type: str = Field(max_length=64)
    data: dict[str, Any] = Field(sa_type=JSON)
    version: int
    occurred_at: datetime = Field(sa_type=UtcDateTime)


class AccountSnapshot(LoyaltyTable, table=True):
    """An account's state after ``sequence`` events, so loading reads only what came after."""

    __tablename__ = "account_snapshots"

    account_id: str = Field(primary_key=True, max_length=64)
    sequence: int = Field(primary_key=True)
    state: dict[str, Any] = Field(sa_type=JSON)
    state_version: int
    """The shape of ``state``: a snapshot of another shape is ignored (and the account replayed),
    never half-read. Snapshots are a cache of the events, so there is nothing to migrate."""


class KnownOrder(LoyaltyTable, table=True):
    """What loyalty needs to remember of an order: whose it is and what it awarded."""

    __tablename__ = "known_orders"

    order_id: str = Field(primary_key=True, max_length=64)
    customer_id: str = Field(max_length=64)
    points_awarded: int = 0
    points_revoked: int = 0


class Subscription(LoyaltyTable, table=True):
    """How far loyalty has read the order event store; updated with what it wrote."""

    __tablename__ = "subscription"

    name: str = Field(primary_key=True, max_length=64)
    position: int = Field(default=0, sa_type=BigInteger)
    """The store's positions are 64-bit: so is a subscriber's place in it."""


CHOREOGRAPHY = choreography_tables(LoyaltyTable.metadata)
"""Loyalty's return consumer's checkpoint, inbox, outbox and dead letters (services/choreography):
the points a return's lines earned are revoked by it (services/loyalty/returns.py)."""
