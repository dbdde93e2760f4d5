"""The order event store's one table: append-only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from services.database import UtcDateTime, utcnow


class EventStoreTable(SQLModel, registry=registry()):
    """Base of the event store's tables: their own metadata, in its own database."""


class EventRow(EventStoreTable, table=True):
    __tablename__ = "events"
    __table_args__ = (
        # Optimistic concurrency: two writers cannot both append sequence n to an aggregate.
        UniqueConstraint("aggregate_id", "sequence", name="one_event_per_sequence"),
    )

    position: int | None = Field(
        default=None,
        primary_key=True,
        sa_type=BigInteger().with_variant(Integer(), "sqlite"),  # SQLite: the rowid, autoincrement
    )
    """The store's global order, for subscribers (projectors, loyalty) to resume from."""
    event_id: str = Field(unique=True, max_length=36)
    aggregate_id: str = Field(index=True, max_length=64)
    sequence: int
    event_type: str = Field(max_length=64)
    data: dict[str, Any] = Field(sa_type=JSON)
    version: int
    occurred_at: datetime = Field(sa_type=UtcDateTime)
    user_id: str = Field(max_length=64)
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    """When the store received it: the start of a projection's lag."""
    correlation_id: str | None = Field(default=None, index=True, max_length=64)
    """The business transaction across streams (a return's id); indexed to read its chain."""
    causation_id: str | None = Field(default=None, max_length=36)
    """The event this one reacts to."""
    traceparent: str | None = Field(default=None, max_length=55)
    """The W3C traceparent of the append that stored it, where tracing is on: the projector, in
    another process, continues the order's trace from it (cloudmart/tracing.py)."""
