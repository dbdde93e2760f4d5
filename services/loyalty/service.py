"""Loyalty points, awarded by reacting to order events: choreography, no orchestrator.

Loyalty subscribes to the order event store on its own (its own position, its own database):
an order's ``OrderCompleted`` awards its customer a point per whole currency unit; a refund of a
completed order (``PaymentRefunded``) takes them back. A return's refund takes back its lines'
points through loyalty's return consumer (services/loyalty/returns.py). Each batch of order
events is handled in one transaction with the subscription's position, and the account events
it writes have ids derived from the order events that caused them: a crash or a replay never
awards twice. Accounts are event-sourced; a snapshot every ``snapshot_every`` events keeps
loading cheap however long an account's history grows.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Engine, func, select
from sqlmodel import Session, col

from cloudmart.contracts.events import EventType, StoredEvent
from cloudmart.contracts.steps import Undo
from services.database import get_for_update, read_only, transaction
from services.event_store.store import EventStore
from services.loyalty.account import (
    CURRENT_VERSION,
    POINTS_AWARDED,
    POINTS_REVOKED,
    STATE_VERSION,
    Account,
    AccountEventData,
    Statement,
    fold,
    points_for,
    upcast,
)
from services.loyalty.models import AccountEvent, AccountSnapshot, KnownOrder, Subscription

SUBSCRIPTION = "order-events"
HISTORY_SHOWN = 100
NAMESPACE = uuid.UUID("9c0f3a55-1a0e-4a5e-bd1c-5d8b2e7f4c10")
POSITION = select(col(Subscription.position)).where(col(Subscription.name) == SUBSCRIPTION)


class LoyaltyService:
    def __init__(self, engine: Engine, store: EventStore, snapshot_every: int = 100) -> None:
        self.engine = engine
        self.store = store
        """The order event store it follows (read only)."""
        self.snapshot_every = snapshot_every
        self._reads = read_only(engine)

    # --- the subscription ----------------------------------------------------------------------

    def run_once(self, limit: int = 500) -> int:
        """React to the next batch of order events; returns how many were read."""
        if self.store.head() <= self.position():
            return 0  # caught up: two reads instead of a write transaction
        with transaction(self.engine) as session:
            subscription = get_for_update(session, Subscription, SUBSCRIPTION)
            if subscription is None:
                subscription = Subscription(name=SUBSCRIPTION)
                session.add(subscription)
            events = self.store.read_after(subscription.position, limit)
            for event in events:
                self._react(session, event)
            if events:
                subscription.position = events[-1].position
            return len(events)

    def catch_up(self) -> int:
        total = 0
        while handled := self.run_once():
            total += handled
        return total

    def position(self) -> int:
        with self._reads.connect() as connection:
            return connection.scalar(POSITION) or 0

    def _react(self, session: Session, event: StoredEvent) -> None:
        known = session.get(KnownOrder, event.aggregate_id)
        match event.event_type:
            case EventType.ORDER_PLACED if known is None:
                session.add(
                    KnownOrder(order_id=event.aggregate_id, customer_id=event.data["customer_id"])
                )
            case EventType.ORDER_COMPLETED if known is not None and not known.points_awarded:
                points = points_for(event.data["total_cents"])
                if points:
                    known.points_awarded = points
                    self._append(
                        session,
                        known.customer_id,
                        POINTS_AWARDED,
                        event,
                        points=points,
                        order_id=known.order_id,
                        reason="order completed",
                    )
            case EventType.PAYMENT_REFUNDED if (
                known is not None
                and event.data["outcome"] == Undo.UNDONE
                and known.points_awarded > known.points_revoked
            ):
                points = known.points_awarded - known.points_revoked
                known.points_revoked = known.points_awarded
                self._append(
                    session,
                    known.customer_id,
                    POINTS_REVOKED,
                    event,
                    points=points,
                    order_id=known.order_id,
                    reason="order refunded",
                )

    def record(
        self, session: Session, account_id: str, event_type: str, cause: StoredEvent, **data: object
    ) -> None:
        """Append an account event caused by ``cause``, in the caller's transaction (once: its
        id is derived from the cause's); for loyalty's other followers of the store
        (services/loyalty/returns.py)."""
        self._append(session, account_id, event_type, cause, **data)

    def _append(
        self, session: Session, account_id: str, event_type: str, cause: StoredEvent, **data: object
    ) -> None:
        event_id = str(uuid.uuid5(NAMESPACE, f"{cause.event_id}/{event_type}"))
        if session.scalar(select(AccountEvent.position).where(AccountEvent.event_id == event_id)):
            return
        sequence = 1 + (
            session.scalar(
                select(func.coalesce(func.max(AccountEvent.sequence), 0)).where(
                    AccountEvent.account_id == account_id
                )
            )
            or 0
        )
        session.add(
            AccountEvent(
                event_id=event_id,
                account_id=account_id,
                sequence=sequence,
                event_type=event_type,
                data=data,
                version=CURRENT_VERSION[event_type],
                occurred_at=cause.occurred_at,
            )
        )
        session.flush()
        if sequence % self.snapshot_every == 0:
            self._snapshot(session, account_id)

    # --- accounts ------------------------------------------------------------------------------

    def account(self, customer_id: str) -> Account:
        """The account: its latest snapshot, and the events after it."""
        with Session(read_only(self.engine)) as session:
            return _load(session, customer_id, use_snapshot=True)

    def replay(self, customer_id: str) -> Account:
        """The account from all of its events, ignoring snapshots (to check them)."""
        with Session(read_only(self.engine)) as session:
            return _load(session, customer_id, use_snapshot=False)

    def statement(self, customer_id: str, last: int = HISTORY_SHOWN) -> Statement:
        """The balance and the account's ``last`` events, read in one snapshot of the database."""
        with Session(read_only(self.engine)) as session:
            account = _load(session, customer_id, use_snapshot=True)
            rows = session.scalars(
                select(AccountEvent)
                .where(
                    AccountEvent.account_id == customer_id,
                    col(AccountEvent.sequence) > account.version - last,
                )
                .order_by(col(AccountEvent.sequence))
            )
            history = [_read(row).entry() for row in rows]
        return Statement(customer_id=customer_id, points=account.points, history=history)

    def _snapshot(self, session: Session, account_id: str) -> None:
        account = _load(session, account_id, use_snapshot=True)
        session.add(
            AccountSnapshot(
                account_id=account_id,
                sequence=account.version,
                state=account.model_dump(mode="json"),
                state_version=STATE_VERSION,
            )
        )


def _load(session: Session, customer_id: str, *, use_snapshot: bool) -> Account:
    account = Account(customer_id=customer_id)
    if use_snapshot:
        latest = session.scalars(
            select(AccountSnapshot)
            .where(
                AccountSnapshot.account_id == customer_id,
                AccountSnapshot.state_version == STATE_VERSION,
            )
            .order_by(col(AccountSnapshot.sequence).desc())
            .limit(1)
        ).first()
        if latest is not None:
            account = Account.model_validate(latest.state)
    rows = session.scalars(
        select(AccountEvent)
        .where(AccountEvent.account_id == customer_id, col(AccountEvent.sequence) > account.version)
        .order_by(col(AccountEvent.sequence))
    )
    return fold(account, (_read(row) for row in rows))


def _read(row: AccountEvent) -> AccountEventData:
    occurred_at: datetime = row.occurred_at
    return AccountEventData(
        sequence=row.sequence,
        event_type=row.event_type,
        data=upcast(row.event_type, row.version, row.data),
        occurred_at=occurred_at,
    )
