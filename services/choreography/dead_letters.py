"""A consumer's delivery failures and dead letters, in the service's own database.

Every failed attempt to handle an event is counted (``count_attempt``, in a transaction of its
own: the failed one rolled back). Once an event has had its consumer's ``max_attempts`` it is
parked: a dead letter of that consumer, which moves on to the next events. An operator lists
the parked events (``parked``), and retries one (the consumer delivers it again on its next
run) or skips it (it is never handled; the row stays, resolved, with who decided).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import Engine, insert, or_, select, update
from sqlmodel import Session, col

from cloudmart.contracts.events import StoredEvent
from services.choreography.tables import ChoreographyTables
from services.database import read_only, transaction, utcnow

RETRY = "retry"
SKIPPED = "skipped"
ERROR_LENGTH = 500


class DeliveryFailure(BaseModel):
    """An event a consumer failed to handle: parked once it had all its attempts."""

    consumer: str
    event_id: str
    position: int
    event_type: str
    correlation_id: str | None
    attempts: int
    last_error: str
    first_failed_at: datetime
    last_failed_at: datetime
    parked_at: datetime | None
    retry_requested_at: datetime | None
    resolution: str | None
    """None while parked (or still being retried); ``retry`` once an operator asked for one,
    ``skipped`` once skipped."""
    resolved_by: str | None
    resolved_at: datetime | None


class NotParked(LookupError):
    """No parked event of that consumer with that id (never parked, handled, or skipped)."""


def count_attempt(
    session: Session, tables: ChoreographyTables, consumer: str, event: StoredEvent, err: Exception
) -> int:
    """One more failed attempt at ``event``; returns how many there have been."""
    failures = tables.delivery_failures
    now = utcnow()
    error = f"{type(err).__name__}: {err}"[:ERROR_LENGTH]
    key = (failures.c.consumer == consumer, failures.c.event_id == event.event_id)
    attempts = session.scalar(select(failures.c.attempts).where(*key).with_for_update())
    if attempts is None:
        session.execute(
            insert(failures).values(
                consumer=consumer,
                event_id=event.event_id,
                position=event.position,
                event_type=event.event_type,
                correlation_id=event.correlation_id,
                attempts=1,
                last_error=error,
                first_failed_at=now,
                last_failed_at=now,
            )
        )
        return 1
    session.execute(
        update(failures)
        .where(*key)
        .values(attempts=attempts + 1, last_error=error, last_failed_at=now)
    )
    return attempts + 1


def park(session: Session, tables: ChoreographyTables, consumer: str, event_id: str) -> None:
    failures = tables.delivery_failures
    session.execute(
        update(failures)
        .where(failures.c.consumer == consumer, failures.c.event_id == event_id)
        .values(parked_at=utcnow(), retry_requested_at=None, resolution=None)
    )


def failures(
    engine: Engine, tables: ChoreographyTables, *, correlation_id: str | None = None
) -> list[DeliveryFailure]:
    """Every consumer's unresolved failures (parked or still being retried), oldest first;
    those of one business transaction with ``correlation_id``."""
    table = tables.delivery_failures
    unresolved = or_(col(table.c.resolution).is_(None), table.c.resolution == RETRY)
    statement = select(table).where(unresolved)
    if correlation_id is not None:
        statement = statement.where(table.c.correlation_id == correlation_id)
    with read_only(engine).connect() as connection:
        rows = connection.execute(statement.order_by(table.c.position)).mappings().all()
    return [DeliveryFailure.model_validate(dict(row)) for row in rows]


def parked(engine: Engine, tables: ChoreographyTables) -> list[DeliveryFailure]:
    """The dead letters waiting for an operator, oldest first."""
    return [f for f in failures(engine, tables) if f.parked_at is not None]


def retries_requested(
    engine: Engine, tables: ChoreographyTables, consumer: str
) -> list[DeliveryFailure]:
    table = tables.delivery_failures
    statement = select(table).where(table.c.consumer == consumer, table.c.resolution == RETRY)
    with read_only(engine).connect() as connection:
        rows = connection.execute(statement.order_by(table.c.position)).mappings().all()
    return [DeliveryFailure.model_validate(dict(row)) for row in rows]


def request_retry(
    engine: Engine, tables: ChoreographyTables, consumer: str, event_id: str, by: str
) -> DeliveryFailure:
    """Ask the consumer to deliver a parked event again (on its next run)."""
    return _resolve(engine, tables, consumer, event_id, by, RETRY)


def skip(
    engine: Engine, tables: ChoreographyTables, consumer: str, event_id: str, by: str
) -> DeliveryFailure:
    """Never handle a parked event: the consumer has already moved past it."""
    return _resolve(engine, tables, consumer, event_id, by, SKIPPED)


def _resolve(
    engine: Engine,
    tables: ChoreographyTables,
    consumer: str,
    event_id: str,
    by: str,
    resolution: str,
) -> DeliveryFailure:
    table = tables.delivery_failures
    key = (table.c.consumer == consumer, table.c.event_id == event_id)
    now = utcnow()
    with transaction(engine) as session:
        row = session.execute(select(table).where(*key).with_for_update()).mappings().first()
        if row is None or row["parked_at"] is None or row["resolution"] is not None:
            raise NotParked(f"{consumer} has no parked event {event_id}")
        values = {"resolution": resolution, "resolved_by": by[:64], "resolved_at": now}
        if resolution == RETRY:
            values["retry_requested_at"] = now
        session.execute(update(table).where(*key).values(**values))
        return DeliveryFailure.model_validate({**row, **values})
