"""The audit log's hash chain (services/audit/chain.py): one canonical encoding per entry, each
hash covering the one before it, and a walk that names the first entry that was edited, deleted
or replaced; and the CSV export's cells (api/routes/audit.py)."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from api.routes.audit import csv_cell
from services.audit.chain import GENESIS, Action, Entry, Walk, canonical, link, rehash, timestamp

AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
ACTION = Action(
    actor_kind="operator",
    actor="alice",
    action="POST /orders/{order_id}/payment-review",
    resource="/orders/6f1c",
    request_id="r-1",
    outcome="202",
)


def chain(length: int) -> list[Entry]:
    entries: list[Entry] = []
    for sequence in range(1, length + 1):
        previous = entries[-1].hash if entries else GENESIS
        moment = AT + timedelta(seconds=sequence)
        entries.append(link(ACTION, sequence, moment, previous))
    return entries


def test_an_entry_has_one_canonical_encoding_and_its_hash_is_sha256_of_it() -> None:
    encoded = canonical(ACTION, 7, AT, "ab" * 32)
    assert encoded == (
        b'{"action":"POST /orders/{order_id}/payment-review","actor":"alice",'
        b'"actor_kind":"operator","occurred_at":"2026-12-01T09:30:00.000000Z","outcome":"202",'
        b'"prev_hash":"' + b"ab" * 32 + b'","request_id":"r-1","resource":"/orders/6f1c",'
        b'"sequence":7}'
    )
    entry = link(ACTION, 7, AT, "ab" * 32)
    assert entry.hash == hashlib.sha256(encoded).hexdigest()
    assert (entry.sequence, entry.prev_hash, entry.occurred_at) == (7, "ab" * 32, AT)
    assert rehash(entry) == entry.hash
    # The same instant in another zone is the same entry; the hash is not among what it covers.
    assert canonical(entry, 7, AT.astimezone(timezone(timedelta(hours=2))), "ab" * 32) == encoded
    # Non-ASCII is escaped, and a missing resource is null: still one spelling.
    odd = dataclasses.replace(ACTION, actor="zoë", resource=None)
    assert b'"actor":"zo\\u00eb"' in canonical(odd, 1, AT, GENESIS)
    assert b'"resource":null' in canonical(odd, 1, AT, GENESIS)


def test_every_field_is_covered_by_the_hash() -> None:
    entry = link(ACTION, 3, AT, GENESIS)
    changes = {
        "actor_kind": "customer",
        "actor": "bob",
        "action": "POST /orders",
        "resource": "/orders/other",
        "request_id": "r-2",
        "outcome": "403",
        "sequence": 4,
        "occurred_at": AT + timedelta(microseconds=1),
        "prev_hash": "f" * 64,
    }
    for field, value in changes.items():
        assert rehash(dataclasses.replace(entry, **{field: value})) != entry.hash, field


def test_times_are_written_in_utc_with_microseconds_and_must_carry_a_zone() -> None:
    assert timestamp(AT) == "2026-12-01T09:30:00.000000Z"
    later = datetime(2026, 12, 1, 11, 30, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    assert timestamp(later) == "2026-12-01T09:30:00.000005Z"
    with pytest.raises(ValueError, match="naive datetime"):
        timestamp(datetime(2026, 12, 1))


def walked(entries: list[Entry], head: tuple[int, str] | None = None) -> str | None:
    walk = Walk()
    walk.feed(entries[:2])  # in batches, as from a database
    walk.feed(entries[2:])
    sequence, last = head or (len(entries), entries[-1].hash if entries else GENESIS)
    broken = walk.end(sequence, last)
    return None if broken is None else str(broken)


def test_an_intact_chain_walks_to_its_head() -> None:
    entries = chain(5)
    walk = Walk()
    assert walk.feed(entries)
    assert walk.end(5, entries[-1].hash) is None
    assert (walk.count, walk.last_sequence, walk.last_hash) == (5, 5, entries[-1].hash)
    assert walked([], (0, GENESIS)) is None  # an empty log is intact


def test_an_edited_entry_is_a_hash_mismatch_at_its_sequence() -> None:
    entries = chain(5)
    entries[2] = dataclasses.replace(entries[2], outcome="500")
    assert walked(entries) == "sequence 3: hash mismatch: the entry was edited"


def test_an_edited_entry_with_its_hash_recomputed_breaks_the_next_link() -> None:
    entries = chain(5)
    forged = dataclasses.replace(entries[2], actor="mallory")
    entries[2] = dataclasses.replace(forged, hash=rehash(forged))
    assert walked(entries) == (
        "sequence 4: previous-hash mismatch: the entry before it (sequence 3) was changed or "
        "replaced"
    )


def test_a_deleted_entry_is_a_gap_after_the_one_before_it() -> None:
    entries = chain(5)
    del entries[2]
    assert walked(entries, (5, entries[-1].hash)) == (
        "sequence 3: missing: a gap after sequence 2 (the next entry is 4); entries were deleted"
    )
    first_gone = chain(3)[1:]
    assert walked(first_gone, (3, first_gone[-1].hash)) == (
        "sequence 1: missing: a gap after sequence 0 (the next entry is 2); entries were deleted"
    )


def test_a_deleted_entry_renumbered_over_is_a_previous_hash_mismatch() -> None:
    entries = chain(5)
    del entries[2]
    entries[2:] = [dataclasses.replace(e, sequence=e.sequence - 1) for e in entries[2:]]
    entries[2:] = [dataclasses.replace(e, hash=rehash(e)) for e in entries[2:]]
    assert walked(entries, (4, entries[-1].hash)) == (
        "sequence 3: previous-hash mismatch: the entry before it (sequence 2) was changed or "
        "replaced"
    )


def test_the_end_of_the_chain_must_be_its_head() -> None:
    entries = chain(5)
    assert walked(entries[:3], (5, entries[-1].hash)) == (
        "sequence 4: missing: the log ends at sequence 3 but its head is at 5; entries were "
        "deleted from the end"
    )
    assert walked(entries, (4, entries[3].hash)) == (
        "sequence 5: the head is at sequence 4 but the log goes on to 5: the head was changed"
    )
    assert walked(entries, (5, "0" * 64)) == (
        "sequence 5: hash mismatch with the head: the last entry was changed or replaced"
    )


def test_a_walk_stops_at_the_first_break() -> None:
    entries = chain(5)
    entries[1] = dataclasses.replace(entries[1], outcome="500")
    entries[3] = dataclasses.replace(entries[3], outcome="500")
    walk = Walk()
    assert not walk.feed(entries)
    assert walk.count == 1
    assert str(walk.end(5, entries[-1].hash)) == "sequence 2: hash mismatch: the entry was edited"
    assert not walk.feed(chain(1))  # fed more, it stays broken where it broke
    assert str(walk.broken) == "sequence 2: hash mismatch: the entry was edited"
    assert walk.count == 1


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://evil")', '\'=HYPERLINK("http://evil")'),
        ("+1+1", "'+1+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("alice", "alice"),
        ("POST /orders", "POST /orders"),
        ("a=b", "a=b"),
        (None, ""),
        (17, "17"),
    ],
)
def test_csv_cells_that_could_start_a_formula_are_prefixed(value: object, cell: str) -> None:
    assert csv_cell(value) == cell
