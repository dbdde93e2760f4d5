"""The customer aggregate: a pure fold over its events, the rules the command side checks, and
the sealing of personal data (open with the customer's key only, never another's)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cloudmart.contracts.customers import (
    Customer,
    CustomerStatus,
    Profile,
    RegisterCustomer,
    customer_stream,
)
from cloudmart.contracts.events import CURRENT_VERSION, Event, EventType, event_id
from cloudmart.contracts.failures import AccountClosed
from services.customers.aggregate import (
    StaleVersion,
    check_open,
    check_version,
    exists,
    replay,
)
from services.customers.sealing import SealingError, new_key, open_with, seal_with
from services.event_store.as_of import events_as_of

ID = "cus-1"
KEY = new_key()
T0 = datetime(2026, 1, 1, tzinfo=UTC)
ADA = Profile(name="Ada Lovelace", email="ada@example.org")
KING = Profile(name="Ada King", email="ada@example.org")


def event(sequence: int, event_type: EventType, **data: object) -> Event:
    stream = customer_stream(ID)
    return Event(
        event_id=event_id(stream, sequence),
        aggregate_id=stream,
        sequence=sequence,
        event_type=event_type,
        data={"customer_id": ID, **data},
        version=CURRENT_VERSION[event_type],
        occurred_at=T0 + timedelta(minutes=sequence),
        user_id=ID,
    )


def story(key: bytes = KEY) -> list[Event]:
    return [
        event(
            1,
            EventType.USER_CREATED,
            guest=True,
            order_id="o-1",
            personal=seal_with(key, ID, ADA),
        ),
        event(2, EventType.PROFILE_UPDATED, fields=["name"], personal=seal_with(key, ID, KING)),
        event(3, EventType.ACCOUNT_CLOSED, reason="moving away"),
    ]


def opener(key: bytes | None = KEY):
    return lambda sealed: None if key is None else open_with(key, ID, sealed)


def test_the_fold_follows_the_story() -> None:
    events = story()
    created = replay(ID, events[:1], opener())
    assert created == Customer(
        customer_id=ID,
        status=CustomerStatus.ACTIVE,
        guest=True,
        profile=ADA,
        created_at=T0 + timedelta(minutes=1),
        updated_at=T0 + timedelta(minutes=1),
        version=1,
    )
    closed = replay(ID, events, opener())
    assert (closed.status, closed.profile, closed.version) == (CustomerStatus.CLOSED, KING, 3)
    assert closed.created_at == created.created_at
    assert replay(ID, events, opener()) == closed  # pure: the same events, the same customer


def test_a_cancel_and_an_erase() -> None:
    events = [
        *story()[:2],
        event(3, EventType.USER_CANCELLED, order_id="o-1", reason="OutOfStock"),
        event(4, EventType.CUSTOMER_ERASED),
    ]
    cancelled = replay(ID, events[:3], opener())
    assert cancelled.status is CustomerStatus.CANCELLED and cancelled.profile == KING
    erased = replay(ID, events, opener())
    assert erased.erased and erased.profile is None and erased.version == 4


def test_a_destroyed_key_reads_as_erased_even_before_customer_erased_is_stored() -> None:
    gone = replay(ID, story(), opener(None))
    assert gone.erased and gone.profile is None
    assert gone.status is CustomerStatus.CLOSED  # the rest of the story still folds


def test_without_an_opener_the_fold_leaves_the_profile_alone() -> None:
    status_only = replay(ID, story())
    assert status_only.profile is None and not status_only.erased
    assert status_only.status is CustomerStatus.CLOSED


def test_the_state_as_of_a_point_is_a_prefix_of_the_story() -> None:
    events = story()
    at = T0 + timedelta(minutes=2, seconds=30)
    assert replay(ID, events_as_of(events, at), opener()).profile == KING
    assert replay(ID, events_as_of(events, 1), opener()).profile == ADA
    assert not exists(replay(ID, events_as_of(events, 0)))


def test_rules_a_closed_or_cancelled_account_and_a_stale_version() -> None:
    active = replay(ID, story()[:2])
    check_open(active)
    check_version(active, 2)
    check_version(active, None)
    with pytest.raises(StaleVersion, match="version 2, not 1"):
        check_version(active, 1)
    with pytest.raises(AccountClosed, match="closed"):
        check_open(replay(ID, story()))
    cancelled = [*story()[:1], event(2, EventType.USER_CANCELLED, order_id="o-1", reason="x")]
    with pytest.raises(AccountClosed, match="cancelled"):
        check_open(replay(ID, cancelled))


def test_a_sealed_profile_opens_only_for_its_customer_with_its_key() -> None:
    sealed = seal_with(KEY, ID, ADA)
    assert sealed.startswith("v1.") and "Ada" not in sealed and "example" not in sealed
    assert seal_with(KEY, ID, ADA) != sealed  # a fresh nonce every time
    assert open_with(KEY, ID, sealed) == ADA
    with pytest.raises(SealingError):
        open_with(KEY, "cus-2", sealed)  # moved into another customer's event
    with pytest.raises(SealingError):
        open_with(new_key(), ID, sealed)
    with pytest.raises(SealingError):
        open_with(KEY, ID, sealed[:-4] + "AAAA")
    with pytest.raises(SealingError):
        open_with(KEY, ID, "not sealed")


def test_e_mails_are_one_per_mailbox() -> None:
    body = RegisterCustomer.model_validate({"name": "Ada", "email": " Ada@Example.ORG "})
    assert body.email == "ada@example.org"
    with pytest.raises(ValueError, match="email"):
        RegisterCustomer.model_validate({"name": "Ada", "email": "ada@localhost"})
