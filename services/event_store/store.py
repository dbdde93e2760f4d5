"""The order event store: append events, read an aggregate's stream, read everything after a
position (what subscribers do)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from cloudmart import tracing
from cloudmart.contracts.events import Event, StoredEvent
from services.database import read_only, transaction
from services.event_store.models import EventRow
from services.event_store.upcasting import upcast

APPEND_LOCK = 0x0C0FFEE
"""PostgreSQL advisory lock held while appending: positions (a sequence) then commit in the
order they were taken, so a subscriber that has read up to position p never later meets an
event below p. (SQLite serialises writers anyway.)"""


class ConcurrencyConflict(RuntimeError):
    """The aggregate's sequence number already holds a different event.

    Not a business failure but an incident (say, a saga reset past its appends, or an order id
    reused after its saga's retention): the append is retried, and the saga waits with the error
    on show in the Web UI, until an operator resolves it. Nothing is silently dropped."""


class OutOfOrder(RuntimeError):
    """The events would leave a gap in their order's sequence: the saga's earlier batch is not
    stored yet (its append is slower than the window, so two ran at once and the later one came
    first). The append is retried and goes in once the earlier one has: subscribers read each
    order's events in sequence, never a later one before an earlier."""


HEAD = select(func.coalesce(func.max(EventRow.position), 0))


def _refuse_gaps(session: Session, new: Sequence[Event]) -> None:
    by_aggregate: dict[str, list[int]] = {}
    for event in new:
        by_aggregate.setdefault(event.aggregate_id, []).append(event.sequence)
    for aggregate_id, sequences in by_aggregate.items():
        last = session.scalar(
            select(func.coalesce(func.max(EventRow.sequence), 0)).where(
                EventRow.aggregate_id == aggregate_id
            )
        )
        assert last is not None
        if min(sequences) <= last:
            raise ConcurrencyConflict(
                f"order {aggregate_id}: sequence {min(sequences)} already taken (last {last})"
            )
        if sorted(sequences) != list(range(last + 1, last + 1 + len(sequences))):
            raise OutOfOrder(
                f"order {aggregate_id}: events {min(sequences)}..{max(sequences)} would follow "
                f"sequence {last}; the earlier ones are not stored yet"
            )


class EventStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._reads = read_only(engine)
        """Built once: subscribers read the store many times a second."""

    def append(self, events: Sequence[Event]) -> int:
        """Append the events not yet stored; returns how many were new.

        An event already stored exactly so is skipped (a retried append). A different event
        with a stored (aggregate, sequence) is a ``ConcurrencyConflict``; new events that do not
        follow their aggregate's last stored one are ``OutOfOrder``.
        """
        if not events:
            return 0
        attributes = {
            "cloudmart.aggregate_id": events[0].aggregate_id,
            "cloudmart.events": len(events),
        }
        with (
            tracing.span("event_store.append", attributes) as appending,
            transaction(self.engine) as session,
        ):
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": APPEND_LOCK})
            stored = {
                row.event_id: row
                for row in session.scalars(
                    select(EventRow).where(col(EventRow.event_id).in_([e.event_id for e in events]))
                )
            }
            for event in events:
                row = stored.get(event.event_id)
                if row is not None and (row.event_type, row.version, row.data) != (
                    event.event_type,
                    event.version,
                    event.data,
                ):
                    raise ConcurrencyConflict(
                        f"order {event.aggregate_id}: sequence {event.sequence} already holds "
                        f"a different event ({row.event_type}, not {event.event_type})"
                    )
            new = [e for e in events if e.event_id not in stored]
            _refuse_gaps(session, new)
            traceparent = tracing.traceparent(appending)  # the projector continues it
            session.add_all(
                EventRow(**(e.model_dump() | {"traceparent": traceparent})) for e in new
            )
            try:
                session.flush()
            except IntegrityError as err:
                raise ConcurrencyConflict(
                    f"aggregate {events[0].aggregate_id}: sequence already taken"
                ) from err
            return len(new)

    def stream(self, aggregate_id: str) -> list[StoredEvent]:
        """The aggregate's events, oldest first, at their current version."""
        statement = (
            select(EventRow)
            .where(EventRow.aggregate_id == aggregate_id)
            .order_by(col(EventRow.sequence))
        )
        with Session(self._reads) as session:
            return [_read(row) for row in session.scalars(statement)]

    def read_after(self, position: int, limit: int = 500) -> list[StoredEvent]:
        """Up to ``limit`` events after ``position``, in the store's order."""
        statement = (
            select(EventRow)
            .where(col(EventRow.position) > position)
            .order_by(col(EventRow.position))
            .limit(limit)
        )
        with Session(self._reads) as session:
            return [_read(row) for row in session.scalars(statement)]

    def correlated(self, correlation_id: str) -> list[StoredEvent]:
        """Every event of one business transaction (say, a return), whichever stream and service
        it came from, in the store's order."""
        statement = (
            select(EventRow)
            .where(EventRow.correlation_id == correlation_id)
            .order_by(col(EventRow.position))
        )
        with Session(self._reads) as session:
            return [_read(row) for row in session.scalars(statement)]

    def last_sequence(self, aggregate_id: str) -> int:
        """The aggregate's last stored sequence (0 for none): where its next event goes."""
        statement = select(func.coalesce(func.max(EventRow.sequence), 0)).where(
            EventRow.aggregate_id == aggregate_id
        )
        with self._reads.connect() as connection:
            return connection.scalar(statement) or 0

    def head(self) -> int:
        """The position of the last event (0 for an empty store)."""
        with self._reads.connect() as connection:
            return connection.scalar(HEAD) or 0


def _read(row: EventRow) -> StoredEvent:
    version, data = upcast(row.event_type, row.version, row.data)
    assert row.position is not None
    return StoredEvent(
        event_id=row.event_id,
        aggregate_id=row.aggregate_id,
        sequence=row.sequence,
        event_type=row.event_type,
        data=data,
        version=version,
        occurred_at=row.occurred_at,
        user_id=row.user_id,
        position=row.position,
        recorded_at=row.recorded_at,
        correlation_id=row.correlation_id,
        causation_id=row.causation_id,
        traceparent=row.traceparent,
    )
