"""The customer aggregate: its state is a pure fold over its events, ``apply(state, event)``,
and its rules are pure checks of that state.

No I/O, no clock: the same events always give the same customer. The personal data in the
events is sealed (services/customers/sealing.py); the fold is handed the opener, a function from
a sealed profile to the profile, or to None once the customer's key is destroyed, and without
one it leaves ``profile`` unset (the command side's checks need only the status).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from cloudmart.contracts.customers import Customer, CustomerStatus, Profile
from cloudmart.contracts.events import Event, EventType
from cloudmart.contracts.failures import AccountClosed

Opener = Callable[[str], Profile | None]
"""A sealed profile (an event's ``personal``) to the profile; None if it cannot be read any
more (the customer's key was destroyed)."""

STATUS_AFTER: dict[str, CustomerStatus] = {
    EventType.USER_CREATED: CustomerStatus.ACTIVE,
    EventType.ACCOUNT_CLOSED: CustomerStatus.CLOSED,
    EventType.USER_CANCELLED: CustomerStatus.CANCELLED,
}

CUSTOMER_EVENTS = frozenset(
    {
        EventType.USER_CREATED,
        EventType.PROFILE_UPDATED,
        EventType.ACCOUNT_CLOSED,
        EventType.USER_CANCELLED,
        EventType.CUSTOMER_ERASED,
    }
)


def apply(state: Customer, event: Event, open_profile: Opener | None = None) -> Customer:
    """The state after ``event``. Events that change nothing here still advance the version."""
    changes: dict[str, Any] = {"version": event.sequence, "updated_at": event.occurred_at}
    if event.event_type in STATUS_AFTER:
        changes["status"] = STATUS_AFTER[event.event_type]
    match event.event_type:
        case EventType.USER_CREATED:
            changes |= {"guest": event.data["guest"], "created_at": event.occurred_at}
        case EventType.CUSTOMER_ERASED:
            changes |= {"erased": True, "profile": None}
    personal = event.data.get("personal")
    if personal is not None and open_profile is not None and not state.erased:
        profile = open_profile(personal)
        # A profile that no longer opens is an erased one, even before CustomerErased is stored.
        changes |= {"profile": profile} if profile is not None else {"erased": True}
    return state.model_copy(update=changes)


def replay(
    customer_id: str, events: Iterable[Event], open_profile: Opener | None = None
) -> Customer:
    state = Customer(customer_id=customer_id)
    for event in events:
        state = apply(state, event, open_profile)
    return state


# --- rules: what the command side checks before it decides an event ---------------------------


def exists(state: Customer) -> bool:
    """Whether the customer's account was ever opened (its first event is UserCreated)."""
    return state.version > 0


def check_open(state: Customer) -> None:
    """A closed or cancelled account places no orders and takes no changes."""
    if state.status is not CustomerStatus.ACTIVE:
        raise AccountClosed(
            f"customer {state.customer_id}'s account is {state.status.lower()}: it places no "
            "orders and takes no changes"
        )


def check_version(state: Customer, expected: int | None) -> None:
    """Optimistic concurrency: a write based on version ``expected`` is refused once the
    customer has moved past it."""
    if expected is not None and expected != state.version:
        raise StaleVersion(state.customer_id, expected, state.version)


class StaleVersion(RuntimeError):
    """The write was based on an older version of the customer than the current one."""

    def __init__(self, customer_id: str, expected: int, current: int) -> None:
        super().__init__(
            f"customer {customer_id} is at version {current}, not {expected}: read it again "
            "and retry"
        )
        self.expected = expected
        self.current = current
