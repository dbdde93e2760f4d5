"""Choreography's mechanics (services/choreography), on a service database of the test's own:
each event handled once in effect whatever fails where, what is published reaches the store
once, a poison event is parked after its attempts and the next ones are handled, and an
operator's retry or skip of a parked event does what it says."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, func, insert, select
from sqlmodel import Session

from cloudmart.contracts.events import Event, StoredEvent
from cloudmart.settings import Settings
from services.choreography import dead_letters
from services.choreography.consumer import Consumer, NotYet
from services.choreography.outbox import Reaction
from services.choreography.tables import choreography_tables
from services.database import create_db_engine, read_only
from services.event_store.store import EventStore
from services.migrations import upgrade

METADATA = MetaData()
TABLES = choreography_tables(METADATA)
EFFECTS = Table(
    "effects",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False),  # not unique: a repeat would show
)
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Pinger:
    """Reacts to each ``Ping`` with an effect (a row) and a ``Pong``; a ``poison`` one fails
    until healed; a ``later`` one is not ready until ``ready``."""

    consumer = "pinger"
    publisher = "pinger-service"

    def __init__(self) -> None:
        self.healed = False
        self.ready = False
        self.calls = 0

    def handles(self, event: StoredEvent) -> bool:
        return event.event_type == "Ping"

    def handle(self, session: Session, event: StoredEvent) -> Sequence[Reaction]:
        self.calls += 1
        session.execute(insert(EFFECTS).values(event_id=event.event_id))
        if event.data.get("poison") and not self.healed:
            raise ValueError(f"cannot digest {event.data['n']}")
        if event.data.get("later") and not self.ready:
            raise NotYet("what it needs has not arrived")
        return [Reaction(f"pongs-{event.aggregate_id}", "Pong", {"n": event.data["n"]})]


@pytest.fixture
def store(settings: Settings) -> Iterator[EventStore]:
    engine = create_db_engine(settings.db_url("event_store"), pool_size=2)
    upgrade("event_store", engine)
    yield EventStore(engine)
    engine.dispose()


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = create_db_engine(settings.db_url("loyalty"), pool_size=2)
    METADATA.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def handler() -> Pinger:
    return Pinger()


@pytest.fixture
def consumer(engine: Engine, store: EventStore, handler: Pinger) -> Consumer:
    return Consumer(engine, store, TABLES, handler, max_attempts=3)


def ping(store: EventStore, n: int, event_type: str = "Ping", **data: object) -> Event:
    stream = "pings"
    event = Event(
        event_id=str(uuid.uuid4()),
        aggregate_id=stream,
        sequence=store.last_sequence(stream) + 1,
        event_type=event_type,
        data={"n": n, **data},
        version=1,
        occurred_at=NOW,
        user_id="someone",
        correlation_id=f"tx-{n}",
    )
    store.append([event])
    return event


def effects(engine: Engine) -> list[str]:
    with read_only(engine).connect() as connection:
        return list(connection.scalars(select(EFFECTS.c.event_id).order_by(EFFECTS.c.id)))


def pongs(store: EventStore) -> list[StoredEvent]:
    return store.stream("pongs-pings")


def test_each_event_is_handled_once_and_its_reaction_stored_once_correlated(
    consumer: Consumer, store: EventStore, engine: Engine
) -> None:
    first, _, third = ping(store, 1), ping(store, 2, "Other"), ping(store, 3)
    assert consumer.run_once() == 3
    assert consumer.run_once() == 2  # its own two reactions, relayed: not pings
    assert consumer.run_once() == 0
    assert effects(engine) == [first.event_id, third.event_id]
    stored = pongs(store)
    assert [(e.data["n"], e.sequence, e.user_id) for e in stored] == [
        (1, 1, "pinger-service"),
        (3, 2, "pinger-service"),
    ]
    assert [(e.correlation_id, e.causation_id) for e in stored] == [
        ("tx-1", first.event_id),
        ("tx-3", third.event_id),
    ]
    assert consumer.position() == store.head()
    assert consumer.relay.pending() == []


def test_a_crash_between_the_effect_and_the_checkpoint_neither_loses_nor_repeats_it(
    consumer: Consumer, store: EventStore, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = ping(store, 1)
    set_checkpoint = consumer._set_checkpoint

    def crash(session: Session, position: int) -> None:
        raise ConnectionError("the process died here")

    monkeypatch.setattr(consumer, "_set_checkpoint", crash)
    assert consumer.run_once() == 0
    assert effects(engine) == [] and pongs(store) == []  # rolled back, effect and reaction alike
    monkeypatch.setattr(consumer, "_set_checkpoint", set_checkpoint)
    consumer.run_once()
    consumer.run_once()
    assert effects(engine) == [event.event_id]
    assert len(pongs(store)) == 1


def test_a_crash_between_the_relay_and_its_mark_stores_the_reaction_once(
    consumer: Consumer, store: EventStore, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    ping(store, 1)
    relay = consumer.relay
    monkeypatch.setattr(relay, "run_once", lambda limit=100: 0)  # the process dies before
    consumer.run_once()
    [pending] = relay.pending()
    relay._append(pending)  # stored, and the process dies before marking it relayed
    monkeypatch.undo()
    assert relay.run_once() == 1
    assert relay.pending() == []
    assert [e.event_id for e in pongs(store)] == [pending.event_id]


def test_a_poison_event_is_parked_after_its_attempts_and_the_next_ones_are_handled(
    consumer: Consumer, store: EventStore, engine: Engine, handler: Pinger
) -> None:
    poison, after = ping(store, 1, poison=True), ping(store, 2)
    assert consumer.run_once() == 0
    assert consumer.run_once() == 0
    [failing] = dead_letters.failures(engine, TABLES)
    assert (failing.attempts, failing.parked_at) == (2, None)
    assert "cannot digest 1" in failing.last_error
    assert effects(engine) == []  # the next one waits behind it until it is parked
    consumer.run_once()
    [parked] = dead_letters.parked(engine, TABLES)
    assert (parked.event_id, parked.attempts, parked.correlation_id) == (poison.event_id, 3, "tx-1")
    assert "ValueError: cannot digest 1" in parked.last_error
    assert effects(engine) == [after.event_id]
    consumer.run_once()
    assert handler.calls == 4  # three attempts at the poison, one at the next: never again


def test_a_retried_dead_letter_is_handled_once_healed(
    consumer: Consumer, store: EventStore, engine: Engine, handler: Pinger
) -> None:
    poison = ping(store, 1, poison=True)
    for _ in range(3):
        consumer.run_once()
    handler.healed = True
    consumer.run_once()
    assert dead_letters.parked(engine, TABLES) != []  # parked until an operator says
    retried = dead_letters.request_retry(engine, TABLES, "pinger", poison.event_id, by="alice")
    assert (retried.resolution, retried.resolved_by) == ("retry", "alice")
    consumer.run_once()
    assert effects(engine) == [poison.event_id]
    assert [e.causation_id for e in pongs(store)] == [poison.event_id]
    assert dead_letters.failures(engine, TABLES) == []
    consumer.run_once()
    assert effects(engine) == [poison.event_id]


def test_a_retry_that_fails_again_stays_parked(
    consumer: Consumer, store: EventStore, engine: Engine
) -> None:
    poison = ping(store, 1, poison=True)
    for _ in range(3):
        consumer.run_once()
    dead_letters.request_retry(engine, TABLES, "pinger", poison.event_id, by="alice")
    consumer.run_once()
    [parked] = dead_letters.parked(engine, TABLES)
    assert (parked.attempts, parked.resolution) == (4, None)
    assert effects(engine) == []


def test_a_skipped_dead_letter_is_never_handled(
    consumer: Consumer, store: EventStore, engine: Engine, handler: Pinger
) -> None:
    poison = ping(store, 1, poison=True)
    for _ in range(3):
        consumer.run_once()
    skipped = dead_letters.skip(engine, TABLES, "pinger", poison.event_id, by="bob")
    assert (skipped.resolution, skipped.resolved_by) == ("skipped", "bob")
    handler.healed = True
    consumer.run_once()
    assert effects(engine) == [] and dead_letters.parked(engine, TABLES) == []
    with pytest.raises(dead_letters.NotParked):
        dead_letters.request_retry(engine, TABLES, "pinger", poison.event_id, by="bob")
    with pytest.raises(dead_letters.NotParked):
        dead_letters.skip(engine, TABLES, "pinger", str(uuid.uuid4()), by="bob")


def test_an_event_not_ready_waits_without_counting_attempts(
    consumer: Consumer, store: EventStore, engine: Engine, handler: Pinger
) -> None:
    later = ping(store, 1, later=True)
    for _ in range(5):
        assert consumer.run_once() == 0
    assert dead_letters.failures(engine, TABLES) == [] and effects(engine) == []
    handler.ready = True
    consumer.run_once()
    assert effects(engine) == [later.event_id]


def test_two_consumers_racing_handle_each_event_once(
    engine: Engine, store: EventStore, handler: Pinger
) -> None:
    events = [ping(store, n) for n in range(20)]
    replicas = [Consumer(engine, store, TABLES, handler) for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda c: c.catch_up(), replicas))
    for replica in replicas:
        replica.catch_up()
    assert sorted(effects(engine)) == sorted(e.event_id for e in events)
    with read_only(engine).connect() as connection:
        assert connection.scalar(select(func.count()).select_from(TABLES.inbox)) == 20
    assert len(pongs(store)) == 20
