"""The audit log in its database: append (serialised, one chain), read with filters, verify.

There is no update and no delete here, by design: an entry, once appended, is only ever read.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select
from sqlmodel import Session, col

from services.audit.chain import Action, Break, Entry, Walk, link
from services.audit.models import AuditEntryRow, AuditHead
from services.database import read_only, transaction, utcnow

VERIFY_BATCH = 1000


@dataclass(frozen=True)
class Filter:
    """Which entries to read: each field that is set must match (times: ``since`` inclusive,
    ``until`` exclusive); ``after`` a sequence number, for the next page."""

    actor: str | None = None
    actor_kind: str | None = None
    action: str | None = None
    resource: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after: int = 0


@dataclass(frozen=True)
class Verdict:
    count: int
    """Entries checked (up to the break, if any)."""
    head_sequence: int
    head_hash: str
    broken: Break | None


class AuditLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._reads = read_only(engine)
        self._ready = False
        self._migrating = threading.Lock()

    def ensure_schema(self) -> None:
        """Migrate the database to head, once per process (the API and the commands that append
        are its writers; no worker hosts it). Retried at the next call if the database was
        down."""
        if self._ready:
            return
        from services.migrations import upgrade  # alembic, only when first needed

        with self._migrating:
            if not self._ready:
                upgrade("audit", self.engine)
                self._ready = True

    def append(self, action: Action) -> Entry:
        """Record ``action`` as the chain's next entry, durably, before returning it.

        Appends are serialised by the head row's lock (PostgreSQL: ``SELECT ... FOR UPDATE``;
        SQLite: the database's write lock, which every transaction takes at its ``BEGIN``), so
        concurrent requests, in one API process or several, each get the next sequence number
        and the hash of the entry just before theirs. The time is taken under the lock too, so
        times never run backwards along the chain (short of the clock itself)."""
        self.ensure_schema()
        with transaction(self.engine) as session:
            head = session.get(AuditHead, 1, with_for_update=True, populate_existing=True)
            if head is None:  # pragma: no cover - the migration inserts it; a trigger keeps it
                raise RuntimeError("the audit log's head row is missing: run make audit-verify")
            entry = link(action, head.sequence + 1, utcnow(), head.hash)
            session.add(_row(entry))
            head.sequence, head.hash = entry.sequence, entry.hash
            session.add(head)
        return entry

    def entries(self, where: Filter = Filter(), *, limit: int = 100) -> list[Entry]:
        """Entries matching ``where``, in sequence order, at most ``limit``."""
        self.ensure_schema()
        query = select(AuditEntryRow).where(col(AuditEntryRow.sequence) > where.after)
        for column, value in (
            (AuditEntryRow.actor, where.actor),
            (AuditEntryRow.actor_kind, where.actor_kind),
            (AuditEntryRow.action, where.action),
            (AuditEntryRow.resource, where.resource),
        ):
            if value is not None:
                query = query.where(col(column) == value)
        if where.since is not None:
            query = query.where(col(AuditEntryRow.occurred_at) >= where.since)
        if where.until is not None:
            query = query.where(col(AuditEntryRow.occurred_at) < where.until)
        query = query.order_by(col(AuditEntryRow.sequence)).limit(limit)
        with Session(self._reads) as session:
            return [_entry(row) for row in session.scalars(query)]

    def verify(self) -> Verdict:
        """Walk the whole chain, in batches, up to the head, and compare its end with it."""
        self.ensure_schema()
        walk = Walk()
        with Session(self._reads) as session:
            head = session.get(AuditHead, 1)
            if head is None:
                return Verdict(0, 0, "", Break(0, "the head row is missing"))
            # Entries appended after the head was read are the next verify's: up to it only.
            for batch in _batches(session, head.sequence):
                if not walk.feed(batch):
                    break
            return Verdict(walk.count, head.sequence, head.hash, walk.end(head.sequence, head.hash))


def _batches(session: Session, up_to: int) -> Iterator[list[Entry]]:
    after = 0
    while True:
        query = (
            select(AuditEntryRow)
            .where(col(AuditEntryRow.sequence) > after, col(AuditEntryRow.sequence) <= up_to)
            .order_by(col(AuditEntryRow.sequence))
            .limit(VERIFY_BATCH)
        )
        batch = [_entry(row) for row in session.scalars(query)]
        if not batch:
            return
        yield batch
        after = batch[-1].sequence


def _row(entry: Entry) -> AuditEntryRow:
    return AuditEntryRow(
        sequence=entry.sequence,
        occurred_at=entry.occurred_at,
        actor_kind=entry.actor_kind,
        actor=entry.actor,
        action=entry.action,
        resource=entry.resource,
        request_id=entry.request_id,
        outcome=entry.outcome,
        prev_hash=entry.prev_hash,
        hash=entry.hash,
    )


def _entry(row: AuditEntryRow) -> Entry:
    return Entry(
        actor_kind=row.actor_kind,  # type: ignore[arg-type]
        actor=row.actor,
        action=row.action,
        resource=row.resource,
        request_id=row.request_id,
        outcome=row.outcome,
        sequence=row.sequence,
        occurred_at=row.occurred_at,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )
