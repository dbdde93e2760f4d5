"""Customers, the command side: register, change a profile, close, erase; and the saga's first
step (``customers.ensure``) and its compensation (Cancel User).

A customer is an aggregate whose events live in the event store (stream ``customer-<id>``).
Every command is one transaction in the customers database that locks the customer's row,
folds its events, checks the rules, and writes what it decided: the e-mail claim, the key, and
the new events as *pending* (an outbox), all or nothing. The events are appended to the store
right after the commit, at the sequences the row reserved for them, and removed from the outbox
once stored. A process that dies in between leaves them pending: whoever next touches the
customer (a retry, any command, a read's fold, the worker's start) appends them first, with the
same ids and data, so the store takes them exactly once. No registration is ever left half done
holding its e-mail (docs/customers.md).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from cloudmart.contracts.customers import (
    Customer,
    CustomerStatus,
    Profile,
    RegisterCustomer,
    UpdateProfile,
    customer_stream,
)
from cloudmart.contracts.events import CURRENT_VERSION, Event, EventType, event_id
from cloudmart.contracts.failures import AccountClosed, AlreadyCompensated, EmailTaken
from cloudmart.contracts.steps import CompensationResult, CustomerChecked, EnsureCustomer, Undo
from services.customers import aggregate
from services.customers.aggregate import Opener, StaleVersion
from services.customers.models import (
    CustomerOrder,
    CustomerRow,
    EmailClaim,
    OrderMark,
    PendingEvent,
    ServiceSecret,
)
from services.customers.sealing import ProfileSealing
from services.database import (
    get_for_update,
    get_or_tombstone,
    insert_if_absent,
    read_only,
    transaction,
    utcnow,
)
from services.event_store.store import ConcurrencyConflict, EventStore

log = logging.getLogger("cloudmart.customers")

CUSTOMER_NAMESPACE = uuid.UUID("5d0c7a42-8f5e-4b8e-9a51-0f3c2d7e6b19")
EMAIL_KEY = "email-hmac"
SYSTEM = "system"
"""The ``user_id`` of what the saga does on its own (Cancel User)."""

__all__ = ["CustomersService", "StaleVersion", "UnknownCustomer"]


class UnknownCustomer(LookupError):
    """No account was ever opened under this id (an order's free-form customer id, say)."""

    def __init__(self, customer_id: str) -> None:
        super().__init__(f"{customer_id} is not a registered customer")
        self.customer_id = customer_id


@dataclass(frozen=True)
class _Draft:
    event_type: EventType
    data: dict[str, Any]
    user_id: str


class CustomersService:
    def __init__(self, engine: Engine, store: EventStore) -> None:
        self.engine = engine
        self.store = store
        """The event store, where the customers' events live (the service appends to it)."""
        self.sealing = ProfileSealing(engine)
        self._reads = read_only(engine)
        self._email_key: bytes | None = None

    # --- commands ------------------------------------------------------------------------------

    def register(
        self, request: RegisterCustomer, *, idempotency_key: str | None = None
    ) -> Customer:
        """Open an account. The e-mail must be free (no open or closed account has it).

        With an ``idempotency_key`` the customer id derives from it and the e-mail, so a retry
        returns the same customer. Without one, a retry with the very same profile completes and
        returns a registration that an earlier attempt left pending (it was never answered)."""
        email = self._email_hmac(request.email)
        profile = Profile(name=request.name, email=request.email, address=request.address)
        if idempotency_key is not None:
            customer_id = _customer_id(f"{email}/{idempotency_key}")
        else:
            customer_id = _customer_id(os.urandom(16).hex())
        holder: str | None = None
        with transaction(self.engine) as session:
            row = get_for_update(session, CustomerRow, customer_id)
            if row is None:
                holder = self._claim_holder(session, email)
                if holder is None:
                    self._open(session, customer_id, email, profile, guest=False, order_id=None)
                elif self._unanswered_registration(session, holder, profile):
                    customer_id = holder
        if holder is not None and holder != customer_id:
            self.flush(holder)  # whatever the holder left pending is completed, not left hanging
            raise EmailTaken(
                "this e-mail already belongs to an account: sign in as that customer instead "
                "of registering again"
            )
        self.flush(customer_id)
        return self._fold(customer_id)

    def update_profile(
        self, customer_id: str, change: UpdateProfile, *, expected_version: int | None, by: str
    ) -> Customer:
        """Change the name, e-mail or address of an open account (``expected_version``: the
        version the change was based on, refused once the customer has moved past it)."""
        email = self._email_hmac(change.email) if change.email is not None else None

        def decide(session: Session, state: Customer) -> list[_Draft]:
            aggregate.check_version(state, expected_version)
            _check_writable(state)
            assert state.profile is not None
            updated = state.profile.model_copy(update=change.model_dump(exclude_none=True))
            fields = [
                f for f in Profile.model_fields if getattr(updated, f) != getattr(state.profile, f)
            ]
            if not fields:
                return []  # the same profile again: nothing happened
            if "email" in fields:
                session.execute(delete(EmailClaim).where(EmailClaim.customer_id == customer_id))
                assert email is not None
                self._claim(session, email, customer_id)
            personal = self.sealing.seal(customer_id, updated, session=session)
            data = {"customer_id": customer_id, "fields": fields, "personal": personal}
            return [_Draft(EventType.PROFILE_UPDATED, data, by)]

        return self._command(customer_id, decide)

    def close(
        self, customer_id: str, reason: str, *, expected_version: int | None = None, by: str
    ) -> Customer:
        """Close an account: it keeps its e-mail, places no orders and takes no changes. Closing
        a closed (or cancelled) account changes nothing."""

        def decide(session: Session, state: Customer) -> list[_Draft]:
            aggregate.check_version(state, expected_version)
            if state.status is not CustomerStatus.ACTIVE or state.erased:
                return []
            data = {"customer_id": customer_id, "reason": reason}
            return [_Draft(EventType.ACCOUNT_CLOSED, data, by)]

        return self._command(customer_id, decide)

    def erase(self, customer_id: str, *, by: str) -> Customer:
        """Crypto-shred the customer: destroy their key (every sealed profile of theirs becomes
        unreadable), free their e-mail, record ``CustomerErased``. Erasing again changes
        nothing."""

        def decide(session: Session, state: Customer) -> list[_Draft]:
            destroyed = self.sealing.destroy(customer_id, session=session)
            session.execute(delete(EmailClaim).where(EmailClaim.customer_id == customer_id))
            if state.erased and not destroyed:
                return []
            return [_Draft(EventType.CUSTOMER_ERASED, {"customer_id": customer_id}, by)]

        customer = self._command(customer_id, decide, open_profiles=False)
        self.sealing.forget_freed_pages()
        return customer

    # --- the saga's first step and its compensation --------------------------------------------

    def ensure(self, request: EnsureCustomer) -> CustomerChecked:
        """May this order's customer order? A registered customer's account must be open; a
        customer id never registered may (as before the service existed); a guest checkout
        opens an account now. Keyed by the order id: a retry answers what the first did."""
        order_id, customer_id = request.order_id, request.customer_id
        email = self._email_hmac(request.guest.email) if request.guest is not None else None
        with transaction(self.engine) as session:
            mark = get_for_update(session, CustomerOrder, order_id)
            if mark is not None:
                if mark.mark != OrderMark.CHECKED:
                    raise AlreadyCompensated(
                        f"order {order_id}'s customer step was already compensated; not "
                        "checking again"
                    )
                return _checked(mark)
            # The order's row goes first: a concurrent attempt for the same order meets its key.
            mark = CustomerOrder(order_id=order_id, customer_id=customer_id)
            session.add(mark)
            session.flush()
            row = get_for_update(session, CustomerRow, customer_id)
            if row is not None:
                _check_writable(self._state(session, row))
                mark.registered = True
            elif request.guest is not None:
                guest = Profile(name=request.guest.name, email=request.guest.email)
                assert email is not None
                if self._claim_holder(session, email) is not None:
                    raise EmailTaken(
                        "the guest's e-mail already belongs to an account: sign in and order "
                        "as that customer"
                    )
                self._open(session, customer_id, email, guest, guest=True, order_id=order_id)
                mark.registered = mark.opened = True
            checked = _checked(mark)
        if checked.created:
            self.flush(customer_id)
        return checked

    def cancel_user(self, order_id: str, reason: str) -> CompensationResult:
        """Cancel User: cancel the account this order's guest checkout opened, unless it has
        placed another order since (then it is kept, and the answer says so). Before the step,
        a tombstone: the step is refused if it arrives later."""
        cancelled: str | None = None
        with transaction(self.engine) as session:
            mark, is_new_tombstone = get_or_tombstone(
                session,
                CustomerOrder,
                order_id,
                {
                    "order_id": order_id,
                    "customer_id": "",
                    "mark": OrderMark.TOMBSTONE,
                    "detail": "no customer step ran",
                    "created_at": utcnow(),
                },
            )
            match mark.mark:
                case OrderMark.TOMBSTONE:
                    detail = "no customer step ran" if is_new_tombstone else "tombstone exists"
                    return CompensationResult(outcome=Undo.NOTHING_TO_UNDO, detail=detail)
                case OrderMark.CANCELLED:
                    return CompensationResult(outcome=Undo.ALREADY_UNDONE, detail=mark.detail)
                case OrderMark.KEPT:
                    return CompensationResult(outcome=Undo.NOTHING_TO_UNDO, detail=mark.detail)
            outcome, mark.detail = self._cancel_opened(session, mark, reason)
            mark.mark = OrderMark.CANCELLED if outcome is Undo.UNDONE else OrderMark.KEPT
            if outcome is Undo.UNDONE:
                cancelled = mark.customer_id
            result = CompensationResult(outcome=outcome, detail=mark.detail)
        if cancelled is not None:
            self.flush(cancelled)
        return result

    def _cancel_opened(
        self, session: Session, mark: CustomerOrder, reason: str
    ) -> tuple[Undo, str]:
        customer_id = mark.customer_id
        if not mark.opened:
            return Undo.NOTHING_TO_UNDO, "the order opened no account"
        row = get_for_update(session, CustomerRow, customer_id)
        assert row is not None  # the step that opened it wrote both rows at once
        other = session.scalar(
            select(CustomerOrder.order_id)
            .where(
                CustomerOrder.customer_id == customer_id,
                CustomerOrder.order_id != mark.order_id,
                CustomerOrder.mark != OrderMark.TOMBSTONE,
            )
            .order_by(col(CustomerOrder.created_at))
            .limit(1)
        )
        if other is not None:
            return Undo.NOTHING_TO_UNDO, f"kept: it has placed order {other}"
        state = self._state(session, row)
        if state.erased or state.status is CustomerStatus.CANCELLED:
            return Undo.NOTHING_TO_UNDO, f"kept: account {customer_id} is already gone"
        session.execute(delete(EmailClaim).where(EmailClaim.customer_id == customer_id))
        data = {"customer_id": customer_id, "order_id": mark.order_id, "reason": reason[:500]}
        self._stage(session, row, [_Draft(EventType.USER_CANCELLED, data, SYSTEM)])
        return Undo.UNDONE, f"cancelled account {customer_id}"

    # --- reads ---------------------------------------------------------------------------------

    def is_registered(self, customer_id: str) -> bool:
        with Session(self._reads) as session:
            return session.get(CustomerRow, customer_id) is not None

    def history(self, customer_id: str) -> list[Event]:
        """The customer's events, oldest first: those stored, then any still pending."""
        with Session(self._reads) as session:
            return self._events(session, customer_id)

    def customer(self, customer_id: str) -> Customer:
        """The customer folded from all their events, profile opened (None once erased)."""
        if not self.is_registered(customer_id):
            raise UnknownCustomer(customer_id)
        return self._fold(customer_id)

    def fold(self, customer_id: str, events: Sequence[Event]) -> Customer:
        """``events`` (a prefix of the customer's) folded, profiles opened with their key."""
        return aggregate.replay(customer_id, events, self._opener(customer_id))

    def placed_orders(self, customer_id: str) -> list[str]:
        """The orders whose first step this customer passed, oldest first."""
        statement = (
            select(CustomerOrder.order_id)
            .where(
                CustomerOrder.customer_id == customer_id,
                CustomerOrder.mark != OrderMark.TOMBSTONE,
            )
            .order_by(col(CustomerOrder.created_at))
        )
        with Session(self._reads) as session:
            return list(session.scalars(statement))

    # --- the outbox ----------------------------------------------------------------------------

    def flush(self, customer_id: str) -> int:
        """Append the customer's pending events to the store, then forget them; returns how
        many the store took as new."""
        with Session(self._reads) as session:
            pending = _pending(session, customer_id)
        if not pending:
            return 0
        appended = self.store.append(pending)
        with transaction(self.engine) as session:
            session.execute(
                delete(PendingEvent).where(
                    PendingEvent.customer_id == customer_id,
                    col(PendingEvent.sequence) <= pending[-1].sequence,
                )
            )
        return appended

    def flush_pending(self) -> int:
        """Append every customer's pending events (at the worker's start: what a crash left)."""
        with Session(self._reads) as session:
            customers = list(session.scalars(select(PendingEvent.customer_id).distinct()))
        return sum(self.flush(customer_id) for customer_id in customers)

    # --- inside ----------------------------------------------------------------------------------

    def _command(
        self,
        customer_id: str,
        decide: Callable[[Session, Customer], list[_Draft]],
        *,
        open_profiles: bool = True,
    ) -> Customer:
        with transaction(self.engine) as session:
            row = get_for_update(session, CustomerRow, customer_id)
            if row is None:
                raise UnknownCustomer(customer_id)
            opener = self.sealing.opener(customer_id, session=session) if open_profiles else None
            drafts = decide(session, self._state(session, row, opener))
            self._stage(session, row, drafts)
        self.flush(customer_id)
        return self._fold(customer_id)

    def _state(self, session: Session, row: CustomerRow, opener: Opener | None = None) -> Customer:
        """The customer as its events say, under the row's lock. The store must end where the
        row says: an event the service did not write there is a conflict, refused before
        anything is decided."""
        events = self._events(session, row.customer_id)
        last = events[-1].sequence if events else 0
        if last != row.version:
            raise ConcurrencyConflict(
                f"customer {row.customer_id}: the event store is at sequence {last}, the "
                f"customers service at {row.version}; an event was written around the service"
            )
        return aggregate.replay(row.customer_id, events, opener)

    def _events(self, session: Session, customer_id: str) -> list[Event]:
        stored: list[Event] = list(self.store.stream(customer_stream(customer_id)))
        last = stored[-1].sequence if stored else 0
        return stored + [e for e in _pending(session, customer_id) if e.sequence > last]

    def _stage(self, session: Session, row: CustomerRow, drafts: list[_Draft]) -> None:
        stream = customer_stream(row.customer_id)
        for draft in drafts:
            row.version += 1
            event = Event(
                event_id=event_id(stream, row.version),
                aggregate_id=stream,
                sequence=row.version,
                event_type=draft.event_type,
                data=draft.data,
                version=CURRENT_VERSION[draft.event_type],
                occurred_at=utcnow(),
                user_id=draft.user_id,
            )
            session.add(
                PendingEvent(
                    customer_id=row.customer_id,
                    sequence=row.version,
                    event=event.model_dump(mode="json"),
                )
            )
        session.flush()

    def _open(
        self,
        session: Session,
        customer_id: str,
        email: str,
        profile: Profile,
        *,
        guest: bool,
        order_id: str | None,
    ) -> None:
        """A new account: its row, key and e-mail claim, and UserCreated, in one transaction."""
        row = CustomerRow(customer_id=customer_id)
        session.add(row)
        session.flush()
        self.sealing.create_key(session, customer_id)
        self._claim(session, email, customer_id)
        personal = self.sealing.seal(customer_id, profile, session=session)
        data = {
            "customer_id": customer_id,
            "guest": guest,
            "order_id": order_id,
            "personal": personal,
        }
        self._stage(session, row, [_Draft(EventType.USER_CREATED, data, customer_id)])

    def _claim(self, session: Session, email: str, customer_id: str) -> None:
        holder = self._claim_holder(session, email)
        if holder not in (None, customer_id):
            raise EmailTaken("this e-mail already belongs to another account")
        if holder is None:
            session.add(EmailClaim(email_hmac=email, customer_id=customer_id))
            try:
                with session.begin_nested():
                    session.flush()
            except IntegrityError:
                # Another transaction claimed it between our look and our insert.
                raise EmailTaken("this e-mail already belongs to another account") from None

    def _claim_holder(self, session: Session, email: str) -> str | None:
        return session.scalar(select(EmailClaim.customer_id).where(EmailClaim.email_hmac == email))

    def _unanswered_registration(self, session: Session, holder: str, profile: Profile) -> bool:
        """Whether ``holder``'s registration never completed (its UserCreated is still pending,
        so no answer was given for it) and registered exactly ``profile``: this request is then
        its retry."""
        row = get_for_update(session, CustomerRow, holder)
        pending = _pending(session, holder)
        if row is None or row.version != 1 or not pending:
            return False
        created = pending[0]
        if created.event_type != EventType.USER_CREATED or created.data["guest"]:
            return False
        opened = self.sealing.opener(holder, session=session)(created.data["personal"])
        return opened == profile

    def _fold(self, customer_id: str) -> Customer:
        return aggregate.replay(customer_id, self.history(customer_id), self._opener(customer_id))

    def _opener(self, customer_id: str) -> Opener:
        return self.sealing.opener(customer_id)

    def _email_hmac(self, email: str) -> str:
        """The claim's key: an HMAC-SHA256 of the (already normalised) address under the
        service's own secret, made on first use. Called outside any transaction: the first
        call writes the secret in one of its own."""
        if self._email_key is None:
            with transaction(self.engine) as session:
                insert_if_absent(
                    session, ServiceSecret, [{"name": EMAIL_KEY, "value": os.urandom(32)}]
                )
                self._email_key = session.scalar(
                    select(ServiceSecret.value).where(ServiceSecret.name == EMAIL_KEY)
                )
        assert self._email_key is not None
        return hmac.new(self._email_key, email.encode(), hashlib.sha256).hexdigest()


def _check_writable(state: Customer) -> None:
    if state.erased:
        raise AccountClosed(f"customer {state.customer_id} was erased: it takes no changes")
    aggregate.check_open(state)


def _checked(mark: CustomerOrder) -> CustomerChecked:
    return CustomerChecked(
        order_id=mark.order_id,
        customer_id=mark.customer_id,
        registered=mark.registered,
        created=mark.opened,
    )


def _pending(session: Session, customer_id: str) -> list[Event]:
    rows = session.scalars(
        select(PendingEvent)
        .where(PendingEvent.customer_id == customer_id)
        .order_by(col(PendingEvent.sequence))
    )
    return [Event.model_validate(row.event) for row in rows]


def _customer_id(seed: str) -> str:
    """``cus-`` and 32 hex digits: its stream id, ``customer-cus-…``, fits the store's 64."""
    return f"cus-{uuid.uuid5(CUSTOMER_NAMESPACE, seed).hex}"
