"""Why a consumer has not reacted to an event yet: what a choreography's chain shows where it
waits (``GET /returns/{id}``), read from the consumer's own tables in its service's database.

Choreography has no one history to open: each service knows only its own part. So the answer is
put together from the consumer that should react: its failures (parked, or still being retried,
with the last error), its checkpoint (behind the event: it is down, or slow), or its outbox (it
has handled the event, and its reaction waits for the relay).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import Engine, select
from sqlmodel import col

from cloudmart.contracts.events import StoredEvent
from services.choreography import dead_letters
from services.choreography.tables import ChoreographyTables
from services.database import read_only


class Delay(BaseModel):
    """Why the consumer's reaction to an event is not in the store yet."""

    reason: str
    parked: bool = False
    attempts: int = 0
    last_error: str | None = None


class Checkpoint(BaseModel):
    consumer: str
    position: int
    updated_at: datetime | None


def checkpoint(engine: Engine, tables: ChoreographyTables, consumer: str) -> Checkpoint:
    table = tables.checkpoints
    with read_only(engine).connect() as connection:
        row = connection.execute(select(table).where(table.c.consumer == consumer)).first()
    if row is None:
        return Checkpoint(consumer=consumer, position=0, updated_at=None)
    return Checkpoint(consumer=consumer, position=row.position, updated_at=row.updated_at)


def delay(
    engine: Engine, tables: ChoreographyTables, consumer: str, event: StoredEvent
) -> Delay | None:
    """Why ``consumer`` has not published its reaction to ``event``; None if nothing shows
    (it is about to)."""
    for failure in dead_letters.failures(engine, tables, correlation_id=event.correlation_id):
        if failure.consumer != consumer or failure.event_id != event.event_id:
            continue
        if failure.parked_at is not None:
            retry = " (an operator asked for a retry)" if failure.resolution else ""
            return Delay(
                reason=f"parked by {consumer} after {failure.attempts} attempts{retry}: "
                f"{failure.last_error}; an operator may retry or skip it",
                parked=True,
                attempts=failure.attempts,
                last_error=failure.last_error,
            )
        return Delay(
            reason=f"{consumer} keeps failing on it (attempt {failure.attempts}, retried): "
            f"{failure.last_error}",
            attempts=failure.attempts,
            last_error=failure.last_error,
        )
    at = checkpoint(engine, tables, consumer)
    if at.position < event.position:
        since = f", last moved at {at.updated_at.isoformat()}" if at.updated_at else ", never ran"
        return Delay(
            reason=f"{consumer} has not read that far (at position {at.position}, the event is "
            f"at {event.position}{since}): is it running?"
        )
    outbox = tables.outbox
    with read_only(engine).connect() as connection:
        unrelayed = connection.scalar(
            select(outbox.c.event_type).where(
                outbox.c.causation_id == event.event_id, col(outbox.c.relayed_at).is_(None)
            )
        )
    if unrelayed is not None:
        return Delay(
            reason=f"{consumer} reacted ({unrelayed}); it waits in its outbox for the relay"
        )
    return None
