"""The transactional outbox: a service's reactions are written in its own database, in the same
transaction as the state change they report, and a ``Relay`` moves them to the event store.

So an event is published if and only if the change it reports was committed: no change without
its event (a crash after the commit leaves the row for the relay), no event without its change
(a rollback takes the row with it). The relay may append a row twice (a crash between the
store's commit and marking the row relayed): the store skips an event whose id it already holds,
so the event is stored once. Each reaction's id is derived from the consumer, the event it
reacts to and its type, so handling the same event again could never publish a second one.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlmodel import Session, col

from cloudmart.contracts.events import Event, StoredEvent
from services.choreography.tables import ChoreographyTables
from services.database import read_only, transaction, utcnow
from services.event_store.store import ConcurrencyConflict, EventStore, OutOfOrder

NAMESPACE = uuid.UUID("5b2f8f0e-2c1d-4d8e-9a57-0c3e7f6a9b21")
APPEND_ATTEMPTS = 10
"""Appends tried when others keep taking the stream's next sequence first."""


@dataclass(frozen=True)
class Reaction:
    """An event a handler publishes in reaction to another: its stream, type and data. Its id,
    correlation (the cause's) and causation (the cause's id) are filled in for it."""

    aggregate_id: str
    event_type: str
    data: dict[str, Any] = field(default_factory=dict)
    version: int = 1


def reaction_id(consumer: str, cause: StoredEvent, event_type: str) -> str:
    """Deterministic: the same consumer reacting to the same event the same way, one id."""
    return str(uuid.uuid5(NAMESPACE, f"{consumer}/{cause.event_id}/{event_type}"))


def publish(
    session: Session,
    tables: ChoreographyTables,
    *,
    consumer: str,
    publisher: str,
    cause: StoredEvent,
    reactions: Sequence[Reaction],
) -> None:
    """Write ``reactions`` to the outbox, in the caller's transaction."""
    now = utcnow()
    for reaction in reactions:
        session.execute(
            insert(tables.outbox).values(
                event_id=reaction_id(consumer, cause, reaction.event_type),
                aggregate_id=reaction.aggregate_id,
                event_type=reaction.event_type,
                data=reaction.data,
                version=reaction.version,
                occurred_at=now,
                user_id=publisher,
                correlation_id=cause.correlation_id,
                causation_id=cause.event_id,
            )
        )


class Relay:
    """Moves a service's outbox to the event store, oldest first, each row to the next sequence
    of its stream (other services append to the same stream: a taken sequence is read again)."""

    def __init__(self, engine: Engine, store: EventStore, tables: ChoreographyTables) -> None:
        self.engine = engine
        self.store = store
        self.tables = tables
        self._reads = read_only(engine)

    def pending(self, limit: int = 100) -> list[Event]:
        outbox = self.tables.outbox
        statement = (
            select(outbox).where(col(outbox.c.relayed_at).is_(None)).order_by(outbox.c.id)
        ).limit(limit)
        with self._reads.connect() as connection:
            rows = connection.execute(statement).mappings().all()
        return [
            Event(sequence=0, **{k: v for k, v in row.items() if k not in ("id", "relayed_at")})
            for row in rows
        ]

    def run_once(self, limit: int = 100) -> int:
        """Relay up to ``limit`` unrelayed events; returns how many."""
        pending = self.pending(limit)
        for event in pending:
            self._append(event)
            with transaction(self.engine) as session:
                session.execute(
                    update(self.tables.outbox)
                    .where(self.tables.outbox.c.event_id == event.event_id)
                    .values(relayed_at=utcnow())
                )
        return len(pending)

    def _append(self, event: Event) -> None:
        for attempt in range(APPEND_ATTEMPTS):
            sequence = self.store.last_sequence(event.aggregate_id) + 1
            try:
                self.store.append([event.model_copy(update={"sequence": sequence})])
                return
            except (ConcurrencyConflict, OutOfOrder):
                if attempt == APPEND_ATTEMPTS - 1:
                    raise
