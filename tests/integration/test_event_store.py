"""The order event store: append-only, idempotent by event id, optimistic per aggregate,
readable in one global order, with old versions upcast."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert

from cloudmart.contracts.events import Event, EventType, event_id
from cloudmart.settings import Settings
from services.database import create_db_engine, transaction
from services.event_store.models import EventRow
from services.event_store.store import ConcurrencyConflict, EventStore, OutOfOrder
from services.factory import Services
from services.migrations import upgrade

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def event(order: str, sequence: int, event_type: str = EventType.ORDER_COMPLETED, **data) -> Event:
    return Event(
        event_id=event_id(order, sequence),
        aggregate_id=order,
        sequence=sequence,
        event_type=event_type,
        data=data or {"total_cents": 100},
        version=1,
        occurred_at=NOW,
        user_id="system",
    )


@pytest.fixture
def store(services: Services) -> EventStore:
    assert services.event_store is not None
    return services.event_store


def test_appending_the_same_events_again_stores_nothing(store: EventStore) -> None:
    events = [event("o-1", 1), event("o-1", 2)]
    assert store.append(events) == 2
    assert store.append(events) == 0  # a retried append
    assert store.append([event("o-1", 2), event("o-1", 3)]) == 1
    assert [e.sequence for e in store.stream("o-1")] == [1, 2, 3]


def test_another_event_with_a_taken_sequence_is_a_conflict(store: EventStore) -> None:
    store.append([event("o-1", 1)])
    intruder = event("o-1", 1).model_copy(update={"event_id": event_id("someone-else", 1)})
    with pytest.raises(ConcurrencyConflict):
        store.append([intruder])
    assert len(store.stream("o-1")) == 1


def test_a_different_event_under_a_taken_sequence_is_refused_not_dropped(
    store: EventStore,
) -> None:
    """Same id (same order and sequence), other content: a reset saga, a reused order id."""
    store.append([event("o-1", 1)])
    rewritten = event("o-1", 1).model_copy(update={"data": {"customer_id": "someone-else"}})
    with pytest.raises(ConcurrencyConflict, match="sequence 1 already holds a different event"):
        store.append([rewritten, event("o-1", 2)])
    assert [e.data for e in store.stream("o-1")] == [event("o-1", 1).data]  # nothing appended


def test_a_batch_that_would_leave_a_gap_waits_for_the_earlier_one(store: EventStore) -> None:
    """Two of a saga's appends can run at once (the store slower than its window); the later
    one is refused until the earlier is in, so every order's events are stored in sequence."""
    store.append([event("o-1", 1)])
    later = [event("o-1", 4), event("o-1", 5)]
    with pytest.raises(OutOfOrder, match=r"events 4\.\.5 would follow sequence 1"):
        store.append(later)
    with pytest.raises(OutOfOrder):
        store.append([event("o-2", 2)])  # an order's first batch starts at 1
    assert [e.sequence for e in store.stream("o-1")] == [1]
    store.append([event("o-1", 2), event("o-1", 3)])
    assert store.append(later) == 2  # its retry
    assert [e.sequence for e in store.read_after(0)] == [1, 2, 3, 4, 5]
    assert store.stream("o-2") == []


def test_subscribers_read_everything_in_one_order(store: EventStore) -> None:
    store.append([event("o-1", 1), event("o-2", 1)])
    store.append([event("o-1", 2)])
    everything = store.read_after(0)
    assert [(e.aggregate_id, e.sequence) for e in everything] == [
        ("o-1", 1),
        ("o-2", 1),
        ("o-1", 2),
    ]
    positions = [e.position for e in everything]
    assert positions == sorted(positions) and len(set(positions)) == 3
    assert [e.sequence for e in store.read_after(positions[0], limit=1)] == [1]
    assert store.head() == positions[-1]


def test_a_version_1_event_is_read_as_the_current_version(store: EventStore) -> None:
    """OrderPlaced v1 (items with ``qty``, no country) was written by an older release."""
    with transaction(store.engine) as session:
        session.execute(
            insert(EventRow).values(
                event_id=event_id("o-old", 1),
                aggregate_id="o-old",
                sequence=1,
                event_type=EventType.ORDER_PLACED,
                data={"customer_id": "c-1", "items": [{"sku": "SKU-A", "qty": 2}]},
                version=1,
                occurred_at=NOW,
                user_id="c-1",
                recorded_at=NOW,
            )
        )
    [placed] = store.stream("o-old")
    assert placed.version == 2
    assert placed.data == {
        "customer_id": "c-1",
        "items": [{"sku": "SKU-A", "quantity": 2}],
        "country": None,
    }


def test_an_event_keeps_its_correlation_and_causation(store: EventStore) -> None:
    """A choreography's events say which transaction they belong to and what they react to;
    the saga's events have neither, and read back so."""
    first = event("r-1", 1).model_copy(update={"correlation_id": "ret-1"})
    reaction = event("other-stream", 1).model_copy(
        update={"correlation_id": "ret-1", "causation_id": first.event_id}
    )
    store.append([event("o-1", 1)])
    store.append([first])
    store.append([reaction])
    assert store.append([reaction]) == 0  # relayed twice: still once
    [saga_event] = store.stream("o-1")
    assert (saga_event.correlation_id, saga_event.causation_id) == (None, None)
    chain = store.correlated("ret-1")
    assert [(e.event_id, e.correlation_id, e.causation_id) for e in chain] == [
        (first.event_id, "ret-1", None),
        (reaction.event_id, "ret-1", first.event_id),
    ]
    assert store.correlated("ret-2") == []
    assert store.last_sequence("r-1") == 1 and store.last_sequence("nothing") == 0


def test_the_correlation_columns_arrive_on_a_store_with_events(settings: Settings) -> None:
    """Revision 0002 adds the columns to a store written by 0001: its events stay, uncorrelated."""
    engine = create_db_engine(settings.db_url("event_store"), pool_size=1)
    upgrade("event_store", engine, revision="0001")
    with transaction(engine) as session:
        session.execute(
            insert(EventRow.__table__).values(  # type: ignore[attr-defined]
                position=1,
                event_id=event_id("o-old", 1),
                aggregate_id="o-old",
                sequence=1,
                event_type=EventType.ORDER_COMPLETED,
                data={"total_cents": 100},
                version=1,
                occurred_at=NOW,
                user_id="c-1",
                recorded_at=NOW,
            )
        )
    upgrade("event_store", engine)
    [old] = EventStore(engine).stream("o-old")
    engine.dispose()
    assert old.data == {"total_cents": 100} and old.correlation_id is None
