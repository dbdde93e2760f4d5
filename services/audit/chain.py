"""The audit log's hash chain, in pure functions: an entry's canonical encoding, its hash, and
where a sequence of stored entries stops being the chain it claims to be.

Each entry's ``hash`` is SHA-256 over its canonical encoding, ``prev_hash`` (the hash of the
entry before it) included, so changing any entry changes its hash, and every later link then
disagrees with it. Sequence numbers start at 1 with no gap, so a deleted entry leaves one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Literal

GENESIS = "0" * 64
"""The ``prev_hash`` of the first entry."""

ActorKind = Literal["customer", "operator", "system", "anonymous"]
ACTOR_KINDS: tuple[ActorKind, ...] = ("customer", "operator", "system", "anonymous")


@dataclass(frozen=True)
class Action:
    """What is to be recorded: who, what, on which resource, from which request, the outcome.
    Identifiers only, never personal data (names, e-mails, addresses, free text): a customer's
    erasure must leave nothing of them here, and the chain cannot be rewritten to remove it."""

    actor_kind: ActorKind
    actor: str
    action: str
    resource: str | None
    request_id: str
    outcome: str


@dataclass(frozen=True)
class Entry(Action):
    """An action as recorded: its place in the chain, its time, and the chain's hashes."""

    sequence: int
    occurred_at: datetime
    prev_hash: str
    hash: str


def timestamp(moment: datetime) -> str:
    """One spelling per instant: UTC, microseconds always written (``isoformat`` drops zeros)."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: audit times carry their timezone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(action: Action, sequence: int, occurred_at: datetime, prev_hash: str) -> bytes:
    """The bytes an entry's hash covers: every field but the hash itself, as JSON with sorted
    keys, no spaces and ASCII escapes, so one entry has exactly one encoding."""
    fields = {
        **asdict(action),
        "sequence": sequence,
        "occurred_at": timestamp(occurred_at),
        "prev_hash": prev_hash,
    }
    fields = {name: fields[name] for name in CANONICAL_FIELDS}  # an Entry's hash stays out
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


CANONICAL_FIELDS = (
    "sequence",
    "occurred_at",
    "actor_kind",
    "actor",
    "action",
    "resource",
    "request_id",
    "outcome",
    "prev_hash",
)


def entry_hash(action: Action, sequence: int, occurred_at: datetime, prev_hash: str) -> str:
    return hashlib.sha256(canonical(action, sequence, occurred_at, prev_hash)).hexdigest()


def link(action: Action, sequence: int, occurred_at: datetime, prev_hash: str) -> Entry:
    """``action`` as the chain's entry number ``sequence``, after the entry hashed ``prev_hash``."""
    return Entry(
        **asdict(action),
        sequence=sequence,
        occurred_at=occurred_at,
        prev_hash=prev_hash,
        hash=entry_hash(action, sequence, occurred_at, prev_hash),
    )


def rehash(entry: Entry) -> str:
    """What ``entry``'s hash should be, given what it holds now."""
    return entry_hash(entry, entry.sequence, entry.occurred_at, entry.prev_hash)


@dataclass(frozen=True)
class Break:
    """Where the chain stops holding: the entry (by sequence) and what is wrong there."""

    sequence: int
    reason: str

    def __str__(self) -> str:
        return f"sequence {self.sequence}: {self.reason}"


@dataclass
class Walk:
    """A walk along the chain, fed entries in sequence order (in batches, from a database)."""

    count: int = 0
    last_sequence: int = 0
    last_hash: str = GENESIS
    broken: Break | None = None

    def feed(self, entries: Iterable[Entry]) -> bool:
        """Check each entry against the one before; False once the chain is broken (and from
        then on: the first break is the one reported)."""
        if self.broken is not None:
            return False
        for entry in entries:
            self.broken = self._check(entry)
            if self.broken is not None:
                return False
            self.count += 1
            self.last_sequence, self.last_hash = entry.sequence, entry.hash
        return True

    def _check(self, entry: Entry) -> Break | None:
        if entry.sequence != self.last_sequence + 1:
            return Break(
                self.last_sequence + 1,
                f"missing: a gap after sequence {self.last_sequence} "
                f"(the next entry is {entry.sequence}); entries were deleted",
            )
        if entry.prev_hash != self.last_hash:
            return Break(
                entry.sequence,
                f"previous-hash mismatch: the entry before it (sequence {self.last_sequence}) "
                "was changed or replaced",
            )
        if rehash(entry) != entry.hash:
            return Break(entry.sequence, "hash mismatch: the entry was edited")
        return None

    def end(self, head_sequence: int, head_hash: str) -> Break | None:
        """The walk's verdict, once every entry is fed: the last entry must be the head's."""
        if self.broken is not None:
            return self.broken
        if head_sequence < self.last_sequence:
            return Break(
                head_sequence + 1,
                f"the head is at sequence {head_sequence} but the log goes on to "
                f"{self.last_sequence}: the head was changed",
            )
        if head_sequence > self.last_sequence:
            return Break(
                self.last_sequence + 1,
                f"missing: the log ends at sequence {self.last_sequence} but its head is at "
                f"{head_sequence}; entries were deleted from the end",
            )
        if head_hash != self.last_hash:
            return Break(
                self.last_sequence,
                "hash mismatch with the head: the last entry was changed or replaced",
            )
        return None
