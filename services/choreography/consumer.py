"""A consumer: follows the event store with its own checkpoint and hands each event it cares
about to its handler, exactly once in effect.

For each such event, one transaction in the service's own database holds: the handler's state
change, the events it publishes (the outbox), the event's id in the inbox, and the checkpoint
moved to the event. A crash (or an exception) anywhere before the commit leaves none of them,
and the event is handled again; after the commit, all of them: the event is not handled again
(the checkpoint is past it, and the inbox has it, for a redelivery by an operator's retry).

A handler that fails has its attempt counted in a transaction of its own (the failed one rolled
back). The consumer stops there and tries the event again on its next run, up to
``max_attempts``; then the event is parked as a dead letter of this consumer
(``dead_letters.py``) and the consumer moves on to the next events. A handler that raises
``NotYet`` is not failing: what it needs has not arrived (another follower of the store is
behind); the consumer stops without counting an attempt and looks again on its next run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from cloudmart.contracts.events import StoredEvent
from services.choreography import dead_letters
from services.choreography.outbox import Reaction, Relay, publish
from services.choreography.tables import ChoreographyTables
from services.database import read_only, transaction, utcnow
from services.event_store.store import EventStore

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5


class NotYet(Exception):
    """The event cannot be handled yet: wait (no attempt is counted) and look again."""


class Handler(Protocol):
    """A service's reactions to the events of the store."""

    consumer: str
    """The consumer's name, unique in the service's database (its checkpoint's key)."""
    publisher: str
    """Who the published events say acted (their ``user_id``): the service's name."""

    def handles(self, event: StoredEvent) -> bool:
        """Whether this event is one to react to (the others only move the checkpoint)."""
        ...

    def handle(self, session: Session, event: StoredEvent) -> Sequence[Reaction]:
        """Change the service's state in ``session`` and say what to publish."""
        ...


class Consumer:
    def __init__(
        self,
        engine: Engine,
        store: EventStore,
        tables: ChoreographyTables,
        handler: Handler,
        *,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.engine = engine
        """The service's own database: the only one it writes."""
        self.store = store
        """The event store it follows (read only)."""
        self.tables = tables
        self.handler = handler
        self.max_attempts = max_attempts
        self.relay = Relay(engine, store, tables)
        """Moves what the handler published to the event store (run after each batch)."""
        self._reads = read_only(engine)

    @property
    def name(self) -> str:
        return self.handler.consumer

    # --- following the store -------------------------------------------------------------------

    def run_once(self, limit: int = 500) -> int:
        """Handle the operators' retries, then the next batch of events, then relay what was
        published; returns how many events were read (a short batch: caught up)."""
        read = self._consume(limit)
        self.relay.run_once()
        return read

    def catch_up(self) -> int:
        total = 0
        while handled := self.run_once():
            total += handled
        return total

    def position(self) -> int:
        checkpoints = self.tables.checkpoints
        statement = select(checkpoints.c.position).where(checkpoints.c.consumer == self.name)
        with self._reads.connect() as connection:
            return connection.scalar(statement) or 0

    def _consume(self, limit: int) -> int:
        self._retry_requested()
        position = self.position()
        if self.store.head() <= position:
            return 0  # caught up: two reads instead of a write transaction
        events = self.store.read_after(position, limit)
        passed = position
        for event in events:
            if not self.handler.handles(event):
                passed = event.position
                continue
            if not self._deliver(event):
                self._move_to(passed)
                return 0  # failed or not yet: look again after the pause
            passed = event.position
        self._move_to(passed)
        return len(events)

    def _deliver(self, event: StoredEvent) -> bool:
        """Handle ``event`` and move the checkpoint to it, in one transaction; True if the
        consumer may go on (handled, or parked now)."""
        try:
            with transaction(self.engine) as session:
                if self._lock_checkpoint(session) >= event.position:
                    return True  # another replica handled it
                self._handle(session, event)
                self._set_checkpoint(session, event.position)
        except NotYet as wait:
            log.info("%s: %s waits: %s", self.name, event.event_type, wait)
            return False
        except Exception as err:
            log.warning("%s: handling %s failed: %s", self.name, event.event_id, err)
            return self._failed(event, err)
        return True

    def _handle(self, session: Session, event: StoredEvent) -> None:
        """The handler's effect, its reactions and the inbox mark, unless already handled."""
        inbox = self.tables.inbox
        handled = session.scalar(
            select(inbox.c.event_id).where(
                inbox.c.consumer == self.name, inbox.c.event_id == event.event_id
            )
        )
        if handled is None:
            reactions = self.handler.handle(session, event)
            publish(
                session,
                self.tables,
                consumer=self.name,
                publisher=self.handler.publisher,
                cause=event,
                reactions=reactions,
            )
            session.execute(
                insert(inbox).values(
                    consumer=self.name, event_id=event.event_id, handled_at=utcnow()
                )
            )
        failures = self.tables.delivery_failures
        session.execute(
            delete(failures).where(
                failures.c.consumer == self.name, failures.c.event_id == event.event_id
            )
        )

    def _failed(self, event: StoredEvent, err: Exception) -> bool:
        """Count the attempt (its own transaction); park the event once it has had all its
        attempts, moving the checkpoint past it. True when parked."""
        with transaction(self.engine) as session:
            attempts = dead_letters.count_attempt(session, self.tables, self.name, event, err)
            if attempts < self.max_attempts:
                return False
            dead_letters.park(session, self.tables, self.name, event.event_id)
            if self._lock_checkpoint(session) < event.position:
                self._set_checkpoint(session, event.position)
        log.error(
            "%s: parked %s (%s) after %d attempts: %s",
            self.name,
            event.event_id,
            event.event_type,
            attempts,
            err,
        )
        return True

    def _retry_requested(self) -> None:
        """Deliver again each parked event an operator asked to retry (out of the store's
        order: it was passed). Handled, it leaves the dead letters; failing, it stays parked
        with one more attempt counted."""
        for parked in dead_letters.retries_requested(self.engine, self.tables, self.name):
            [event] = self.store.read_after(parked.position - 1, limit=1)
            try:
                with transaction(self.engine) as session:
                    self._handle(session, event)
            except NotYet:
                continue
            except Exception as err:
                log.warning("%s: retry of %s failed: %s", self.name, event.event_id, err)
                with transaction(self.engine) as session:
                    dead_letters.count_attempt(session, self.tables, self.name, event, err)
                    dead_letters.park(session, self.tables, self.name, event.event_id)

    # --- the checkpoint ------------------------------------------------------------------------

    def _lock_checkpoint(self, session: Session) -> int:
        """The checkpoint's position, its row locked until the transaction ends (created at 0
        the first time)."""
        checkpoints = self.tables.checkpoints
        dialect = session.get_bind().dialect.name
        insert_ = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}[dialect]
        session.execute(
            insert_(checkpoints)
            .values(consumer=self.name, position=0, updated_at=utcnow())
            .on_conflict_do_nothing()
        )
        position = session.scalar(
            select(checkpoints.c.position)
            .where(checkpoints.c.consumer == self.name)
            .with_for_update()
        )
        return position or 0

    def _set_checkpoint(self, session: Session, position: int) -> None:
        checkpoints = self.tables.checkpoints
        session.execute(
            update(checkpoints)
            .where(checkpoints.c.consumer == self.name)
            .values(position=position, updated_at=utcnow())
        )

    def _move_to(self, position: int) -> None:
        """Past events it does not react to (never backwards: a replica may be ahead)."""
        if position <= self.position():
            return
        with transaction(self.engine) as session:
            if self._lock_checkpoint(session) < position:
                self._set_checkpoint(session, position)
