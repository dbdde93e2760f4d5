"""The customers service on the real databases (SQLite and PostgreSQL): registration and its
unique e-mail under racing requests, the outbox that survives a crash between the customers
database and the event store, crypto-shredding (no personal data in the store, none readable
after an erase), optimistic concurrency, and the saga's step and Cancel User as activities."""

from __future__ import annotations

import threading
import typing
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlmodel import Session
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.customers import CustomersActivities
from cloudmart.contracts.customers import (
    CustomerStatus,
    Guest,
    Profile,
    RegisterCustomer,
    UpdateProfile,
    customer_stream,
)
from cloudmart.contracts.events import CURRENT_VERSION, Event, EventType, event_id
from cloudmart.contracts.failures import EmailTaken
from cloudmart.contracts.steps import Compensate, EnsureCustomer, Undo
from cloudmart.settings import Settings
from services.customers import CustomersService
from services.customers.aggregate import StaleVersion
from services.customers.models import CustomerKey, EmailClaim, PendingEvent
from services.database import utcnow
from services.event_store.store import ConcurrencyConflict
from services.factory import build_profile_reader, open_services, prepare

ADA = RegisterCustomer(name="Ada Lovelace", email="Ada.Lovelace@Example.org")


@pytest.fixture
def customers(settings: Settings) -> Iterator[CustomersService]:
    hosted = open_services(settings, ["customers"])
    assert hosted.customers is not None
    prepare(hosted.customers, settings)
    yield hosted.customers
    hosted.dispose()


def stored(service: CustomersService, customer_id: str) -> list[str]:
    """The event types the event store holds for the customer (not the pending ones)."""
    return [e.event_type for e in service.store.stream(customer_stream(customer_id))]


def crash_after_commit(monkeypatch: pytest.MonkeyPatch, service: CustomersService) -> None:
    """The process dies after the customers database committed, before the store's append."""

    def dies(customer_id: str) -> int:
        raise SystemExit("killed between the commit and the append")

    monkeypatch.setattr(service, "flush", dies)


# --- registration ---------------------------------------------------------------------------


def test_a_registration_is_a_sealed_user_created_in_the_store(customers) -> None:
    ada = customers.register(ADA)
    assert ada.status is CustomerStatus.ACTIVE and not ada.guest and ada.version == 1
    assert ada.profile == Profile(name="Ada Lovelace", email="ada.lovelace@example.org")
    [created] = customers.store.stream(customer_stream(ada.customer_id))
    assert created.event_type == EventType.USER_CREATED
    assert created.user_id == ada.customer_id
    assert set(created.data) == {"customer_id", "guest", "order_id", "personal"}
    # Whole values: a three-letter word like "Ada" can turn up in random base64 ciphertext.
    sealed = created.data["personal"]
    assert "Ada Lovelace" not in sealed and "ada.lovelace" not in sealed.lower()
    assert customers.customer(ada.customer_id) == ada


def test_an_e_mail_is_taken_once_however_it_is_spelt(customers) -> None:
    customers.register(ADA)
    with pytest.raises(EmailTaken):
        customers.register(RegisterCustomer(name="Someone", email="ADA.LOVELACE@example.ORG"))


def test_two_racing_registrations_of_one_e__mail_open_one_account(
    customers, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "postgresql":
        # Both look before either claims: only the unique index can then tell them apart.
        # (SQLite's writers take the database lock at BEGIN: one waits for the other.)
        both_looked = threading.Barrier(2, timeout=10)
        look = customers._claim_holder

        def look_then_wait(session: Session, email: str) -> str | None:
            holder = look(session, email)
            both_looked.wait()
            return holder

        monkeypatch.setattr(customers, "_claim_holder", look_then_wait)
    with ThreadPoolExecutor(2) as pool:
        attempts = [
            pool.submit(customers.register, RegisterCustomer(name=name, email=ADA.email))
            for name in ("Ada", "Eve")
        ]
    outcomes = [type(a.exception()).__name__ if a.exception() else "registered" for a in attempts]
    assert sorted(outcomes) == ["EmailTaken", "registered"]
    with Session(customers.engine) as session:
        assert len(session.scalars(select(EmailClaim)).all()) == 1


def test_a_crash_before_the_append_is_completed_by_a_retry_with_the_same_key(
    customers, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as crashing:
        crash_after_commit(crashing, customers)
        with pytest.raises(SystemExit):
            customers.register(ADA, idempotency_key="a-random-key-0123456789")
    retried = customers.register(ADA, idempotency_key="a-random-key-0123456789")
    assert stored(customers, retried.customer_id) == [EventType.USER_CREATED]
    again = customers.register(ADA, idempotency_key="a-random-key-0123456789")
    assert again == retried
    assert stored(customers, retried.customer_id) == [EventType.USER_CREATED]


def test_a_crash_before_the_append_is_completed_by_a_retry_without_a_key(
    customers, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as crashing:
        crash_after_commit(crashing, customers)
        with pytest.raises(SystemExit):
            customers.register(ADA)
    retried = customers.register(ADA)  # the same profile: the unanswered registration's retry
    assert stored(customers, retried.customer_id) == [EventType.USER_CREATED]
    assert retried.profile == Profile(name=ADA.name, email=ADA.email)
    # Answered now: the e-mail is taken, for a retry as for anyone.
    with pytest.raises(EmailTaken):
        customers.register(ADA)


def test_what_a_crash_left_pending_is_appended_when_the_worker_starts(
    customers, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as crashing:
        crash_after_commit(crashing, customers)
        with pytest.raises(SystemExit):
            customers.register(ADA)
    with Session(customers.engine) as session:
        [pending] = session.scalars(select(PendingEvent)).all()
    assert stored(customers, pending.customer_id) == []
    prepare(customers, settings)
    assert stored(customers, pending.customer_id) == [EventType.USER_CREATED]
    with Session(customers.engine) as session:
        assert session.scalars(select(PendingEvent)).all() == []


# --- changes and concurrency ------------------------------------------------------------------


def test_a_profile_change_moves_the_e_mail_claim(customers) -> None:
    ada = customers.register(ADA)
    change = UpdateProfile(email="countess@example.org")
    changed = customers.update_profile(ada.customer_id, change, expected_version=1, by="x")
    assert changed.profile.email == "countess@example.org" and changed.version == 2
    [_, updated] = customers.store.stream(customer_stream(ada.customer_id))
    assert updated.data["fields"] == ["email"]
    customers.register(RegisterCustomer(name="Another Ada", email=ADA.email))  # freed
    with pytest.raises(EmailTaken):
        customers.register(RegisterCustomer(name="Eve", email="countess@example.org"))
    same = customers.update_profile(ada.customer_id, change, expected_version=None, by="x")
    assert same.version == 2  # nothing changed: no event


def test_a_change_based_on_an_old_version_is_refused(customers) -> None:
    ada = customers.register(ADA)
    customers.update_profile(ada.customer_id, UpdateProfile(name="Ada"), expected_version=1, by="x")
    with pytest.raises(StaleVersion):
        customers.update_profile(
            ada.customer_id, UpdateProfile(name="Ada King"), expected_version=1, by="x"
        )
    assert customers.customer(ada.customer_id).profile.name == "Ada"


def test_an_event_written_around_the_service_is_a_conflict(customers) -> None:
    ada = customers.register(ADA)
    stream = customer_stream(ada.customer_id)
    customers.store.append(
        [
            Event(
                event_id=event_id(stream, 2),
                aggregate_id=stream,
                sequence=2,
                event_type=EventType.ACCOUNT_CLOSED,
                data={"customer_id": ada.customer_id, "reason": "someone else"},
                version=CURRENT_VERSION[EventType.ACCOUNT_CLOSED],
                occurred_at=utcnow(),
                user_id="intruder",
            )
        ]
    )
    with pytest.raises(ConcurrencyConflict):
        customers.close(ada.customer_id, "bye", by=ada.customer_id)


def test_a_closed_account_takes_no_changes_and_keeps_its_e_mail(customers) -> None:
    ada = customers.register(ADA)
    closed = customers.close(ada.customer_id, "moving away", by=ada.customer_id)
    assert closed.status is CustomerStatus.CLOSED
    assert customers.close(ada.customer_id, "again", by=ada.customer_id) == closed
    with pytest.raises(Exception, match="closed"):
        customers.update_profile(
            ada.customer_id, UpdateProfile(name="Ada"), expected_version=None, by="x"
        )
    with pytest.raises(EmailTaken):
        customers.register(RegisterCustomer(name="Eve", email=ADA.email))


# --- crypto-shredding -----------------------------------------------------------------------


def raw_events(settings: Settings) -> str:
    """Every byte of the event store as it lies on disk (SQLite: the file and its log) or every
    row as PostgreSQL returns it: what someone with the database, and no keys, can read."""
    url = make_url(settings.db_url("event_store"))
    if url.get_backend_name() == "sqlite":
        path = Path(str(url.database))
        files = [path, *(Path(f"{path}{suffix}") for suffix in ("-wal", "-shm"))]
        return b"".join(f.read_bytes() for f in files if f.exists()).decode("latin-1")
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return "\n".join(
                connection.scalars(text("SELECT CAST(data AS TEXT) FROM events")).all()
            )
    finally:
        engine.dispose()


def test_personal_data_never_lies_in_the_store_and_is_gone_after_an_erase(
    customers, settings: Settings
) -> None:
    who = RegisterCustomer(name="Grace Brewster Hopper", email="grace.hopper@navy.example")
    grace = customers.register(who)
    customers.update_profile(
        grace.customer_id, UpdateProfile(name="Grace Murray Hopper"), expected_version=1, by="x"
    )
    dump = raw_events(settings)
    assert grace.customer_id in dump  # the rows are there...
    for secret in ("Grace", "Hopper", "grace.hopper", "navy.example"):
        assert secret not in dump  # ...their personal data is not, in clear
    reader = build_profile_reader(settings)
    sealed = [e.data["personal"] for e in customers.history(grace.customer_id)]
    assert reader.open(grace.customer_id, sealed[-1]).name == "Grace Murray Hopper"

    erased = customers.erase(grace.customer_id, by="operator")
    assert erased.erased and erased.profile is None and erased.version == 3
    assert stored(customers, grace.customer_id)[-1] == EventType.CUSTOMER_ERASED
    assert [reader.open(grace.customer_id, s) for s in sealed] == [None, None]
    assert customers.customer(grace.customer_id) == erased
    with Session(customers.engine) as session:
        assert session.get(CustomerKey, grace.customer_id) is None
        assert session.scalars(select(EmailClaim)).all() == []
    assert customers.erase(grace.customer_id, by="operator") == erased  # idempotent
    customers.register(RegisterCustomer(name="Grace", email=who.email))  # the e-mail is free
    reader.engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite"])  # PostgreSQL keeps dead rows until VACUUM
def test_an_erased_key_leaves_no_copy_in_the_sqlite_files(customers) -> None:
    ada = customers.register(ADA)
    with Session(customers.engine) as session:
        key = session.get(CustomerKey, ada.customer_id).key
    database = Path(str(make_url(str(customers.engine.url)).database))

    def on_disk() -> bytes:
        files = [database, *(Path(f"{database}{s}") for s in ("-wal", "-shm"))]
        return b"".join(f.read_bytes() for f in files if f.exists())

    assert key in on_disk()
    customers.erase(ada.customer_id, by="operator")
    assert key not in on_disk()


# --- the saga's step and Cancel User, as Temporal runs them ---------------------------------


@pytest.fixture
def run() -> typing.Callable[..., typing.Any]:
    return ActivityEnvironment().run


@pytest.fixture
def steps(customers: CustomersService) -> CustomersActivities:
    return CustomersActivities(customers)


def ensure(order_id: str, customer_id: str, guest: Guest | None = None) -> EnsureCustomer:
    return EnsureCustomer(order_id=order_id, customer_id=customer_id, guest=guest)


GUEST = Guest(name="Bob Guest", email="bob@guest.example")


def undo(order_id: str) -> Compensate:
    return Compensate(order_id=order_id, reason="OutOfStock: no more")


def test_a_guest_checkout_opens_one_account_however_often_it_runs(run, steps, customers) -> None:
    first = run(steps.ensure, ensure("o-1", "guest-1", GUEST))
    assert first.registered and first.created
    assert run(steps.ensure, ensure("o-1", "guest-1", GUEST)) == first
    assert stored(customers, "guest-1") == [EventType.USER_CREATED]
    bob = customers.customer("guest-1")
    assert bob.guest and bob.profile == Profile(name=GUEST.name, email=GUEST.email)
    [created] = customers.history("guest-1")
    assert created.data["order_id"] == "o-1" and created.data["guest"] is True


def test_registered_unknown_and_closed_customers(run, steps, customers) -> None:
    ada = customers.register(ADA)
    checked = run(steps.ensure, ensure("o-1", ada.customer_id))
    assert checked.registered and not checked.created
    unknown = run(steps.ensure, ensure("o-2", "c-42"))
    assert not unknown.registered and not unknown.created
    assert customers.placed_orders(ada.customer_id) == ["o-1"]
    customers.close(ada.customer_id, "bye", by=ada.customer_id)
    with pytest.raises(ApplicationError) as closed:
        run(steps.ensure, ensure("o-3", ada.customer_id))
    assert closed.value.type == "AccountClosed" and closed.value.non_retryable
    assert run(steps.ensure, ensure("o-1", ada.customer_id)) == checked  # the first answer


def test_a_guest_with_a_taken_e_mail_is_told_to_sign_in(run, steps, customers) -> None:
    customers.register(RegisterCustomer(name="Bob", email=GUEST.email))
    with pytest.raises(ApplicationError) as taken:
        run(steps.ensure, ensure("o-1", "guest-1", GUEST))
    assert taken.value.type == "EmailTaken" and taken.value.non_retryable
    assert "sign in" in taken.value.message
    assert GUEST.email not in taken.value.message  # it goes to Temporal's history
    assert not customers.is_registered("guest-1")


def test_cancel_user_cancels_the_guest_account_once_and_frees_its_e_mail(
    run, steps, customers
) -> None:
    run(steps.ensure, ensure("o-1", "guest-1", GUEST))
    first = run(steps.cancel_user, undo("o-1"))
    assert first.outcome is Undo.UNDONE and first.detail == "cancelled account guest-1"
    again = run(steps.cancel_user, undo("o-1"))
    assert again.outcome is Undo.ALREADY_UNDONE
    assert stored(customers, "guest-1") == [EventType.USER_CREATED, EventType.USER_CANCELLED]
    assert customers.customer("guest-1").status is CustomerStatus.CANCELLED
    customers.register(RegisterCustomer(name="Bob", email=GUEST.email))  # free again
    with pytest.raises(ApplicationError) as late:
        run(steps.ensure, ensure("o-1", "guest-1", GUEST))
    assert late.value.type == "AlreadyCompensated"


def test_cancel_user_keeps_an_account_that_placed_another_order(run, steps, customers) -> None:
    run(steps.ensure, ensure("o-1", "guest-1", GUEST))
    run(steps.ensure, ensure("o-2", "guest-1"))  # the guest, back as a customer
    kept = run(steps.cancel_user, undo("o-1"))
    assert kept.outcome is Undo.NOTHING_TO_UNDO
    assert kept.detail == "kept: it has placed order o-2"
    assert run(steps.cancel_user, undo("o-1")) == kept
    assert run(steps.cancel_user, undo("o-2")).detail == "the order opened no account"
    assert customers.customer("guest-1").status is CustomerStatus.ACTIVE
    assert stored(customers, "guest-1") == [EventType.USER_CREATED]


def test_cancel_user_before_the_step_refuses_the_late_step(run, steps, customers) -> None:
    tombstone = run(steps.cancel_user, undo("o-1"))
    assert tombstone.outcome is Undo.NOTHING_TO_UNDO and tombstone.detail == "no customer step ran"
    assert run(steps.cancel_user, undo("o-1")).detail == "tombstone exists"
    with pytest.raises(ApplicationError) as late:
        run(steps.ensure, ensure("o-1", "guest-1", GUEST))
    assert late.value.type == "AlreadyCompensated" and late.value.non_retryable
    assert not customers.is_registered("guest-1")
