"""The choreography's tables, added to a reacting service's own metadata (its own database).

``choreography_tables(metadata)`` defines them on that service's ``MetaData`` so its
migrations' check (tests/integration/test_migrations.py) sees them as the service's own;
``schema.py`` creates them in the service's migration.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
)

from services.database import UtcDateTime

ID = BigInteger().with_variant(Integer(), "sqlite")
"""An autoincrementing 64-bit key (SQLite: the rowid)."""


@dataclass(frozen=True)
class ChoreographyTables:
    outbox: Table
    """Events the service publishes, until the relay has put them in the event store."""
    inbox: Table
    """The ids of the events each consumer has handled."""
    checkpoints: Table
    """How far each consumer has read the event store."""
    delivery_failures: Table
    """Events a consumer failed to handle: attempts, last error, and once parked, the
    operator's retry or skip."""


def choreography_tables(metadata: MetaData) -> ChoreographyTables:
    return ChoreographyTables(
        outbox=Table(
            "outbox",
            metadata,
            Column("id", ID, primary_key=True, autoincrement=True),
            Column("event_id", String(36), nullable=False, unique=True),
            Column("aggregate_id", String(64), nullable=False),
            Column("event_type", String(64), nullable=False),
            Column("data", JSON, nullable=False),
            Column("version", Integer, nullable=False),
            Column("occurred_at", UtcDateTime, nullable=False),
            Column("user_id", String(64), nullable=False),
            Column("correlation_id", String(64), nullable=True),
            Column("causation_id", String(36), nullable=True),
            Column("relayed_at", UtcDateTime, nullable=True),
        ),
        inbox=Table(
            "inbox",
            metadata,
            Column("consumer", String(64), nullable=False),
            Column("event_id", String(36), nullable=False),
            Column("handled_at", UtcDateTime, nullable=False),
            PrimaryKeyConstraint("consumer", "event_id"),
        ),
        checkpoints=Table(
            "consumer_checkpoints",
            metadata,
            Column("consumer", String(64), primary_key=True),
            Column("position", BigInteger, nullable=False),
            Column("updated_at", UtcDateTime, nullable=False),
        ),
        delivery_failures=Table(
            "delivery_failures",
            metadata,
            Column("consumer", String(64), nullable=False),
            Column("event_id", String(36), nullable=False),
            Column("position", BigInteger, nullable=False),
            Column("event_type", String(64), nullable=False),
            Column("correlation_id", String(64), nullable=True),
            Column("attempts", Integer, nullable=False),
            Column("last_error", String(500), nullable=False),
            Column("first_failed_at", UtcDateTime, nullable=False),
            Column("last_failed_at", UtcDateTime, nullable=False),
            Column("parked_at", UtcDateTime, nullable=True),
            Column("retry_requested_at", UtcDateTime, nullable=True),
            Column("resolution", String(16), nullable=True),
            Column("resolved_by", String(64), nullable=True),
            Column("resolved_at", UtcDateTime, nullable=True),
            PrimaryKeyConstraint("consumer", "event_id"),
        ),
    )
