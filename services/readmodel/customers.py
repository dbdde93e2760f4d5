"""The customer projections: UserView (one row per customer) and UserStatistics (running totals
and per-day counts), kept by the projector from the customers' and the orders' events.

A customer appears at their first event: ``UserCreated`` (registered), or the ``OrderPlaced`` of
a customer id that was never registered (``registered`` false: orders from before the customers
service, which stay valid). The profile (name, e-mail) comes from the events' ``personal``, sealed
with the customer's own key; the projector opens it with a ``ProfileReader`` and stores it in
clear in ``user_view`` only until the customer is erased. Once the key is destroyed the profile
cannot be opened, so a rebuild after an erasure shows the customer erased as the live table does.

Every number is the fold of the events in the store's order, with no clock: a rebuild gives the
same rows. The arithmetic is in customer_stats.py; loyalty points use loyalty's own rule.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Protocol

from sqlalchemy import select
from sqlmodel import Session

from cloudmart.contracts.customers import CustomerStatus, Profile
from cloudmart.contracts.events import EventType, StoredEvent
from cloudmart.contracts.steps import Undo
from services.event_store.aggregate import STATUS_AFTER
from services.loyalty.account import points_for
from services.readmodel.customer_stats import buyer_changes, day_of, favourite_categories
from services.readmodel.models import CustomerDay, CustomerStats, UserCategory, UserOrder, UserView

STATS = "all"
CUSTOMER_EVENTS = frozenset(
    {
        EventType.USER_CREATED,
        EventType.PROFILE_UPDATED,
        EventType.ACCOUNT_CLOSED,
        EventType.USER_CANCELLED,
        EventType.CUSTOMER_ERASED,
    }
)
"""The customer stream's events (``customer-<id>``); every other type but ProductRated is an
order's."""

CategoryOf = Callable[[str], str]
"""A sku's category, from the catalog the projector keeps in ``product_search``."""


class ProfileReader(Protocol):
    """Opens a customer's sealed profile (the events' ``personal``) with their key: the customers
    service's (services/factory.py's ``build_profile_reader``)."""

    def open(self, customer_id: str, sealed: str) -> Profile | None:
        """The profile; None once the customer's key is destroyed (erased)."""
        ...


# --- the customers' own events ----------------------------------------------------------------


def apply_customer_event(
    session: Session, event: StoredEvent, profiles: ProfileReader | None
) -> None:
    data = event.data
    view = _view(session, data["customer_id"], event.occurred_at)
    match event.event_type:
        case EventType.USER_CREATED:
            if not view.registered:
                view.registered = True
                _stats(session).registered += 1
            view.guest = bool(data.get("guest", False))
            view.status = CustomerStatus.ACTIVE
            _open_profile(view, data.get("personal"), profiles)
        case EventType.PROFILE_UPDATED:
            _open_profile(view, data.get("personal"), profiles)
        case EventType.ACCOUNT_CLOSED:
            view.status = CustomerStatus.CLOSED
        case EventType.USER_CANCELLED:
            view.status = CustomerStatus.CANCELLED
        case EventType.CUSTOMER_ERASED:
            _erase(view)
    view.updated_at = max(view.updated_at, event.occurred_at)


def _open_profile(view: UserView, sealed: str | None, profiles: ProfileReader | None) -> None:
    if view.erased or profiles is None:
        # Erased stays erased; without a reader this deployment shows no profiles at all.
        return
    try:
        profile = profiles.open(view.customer_id, sealed) if sealed else None
    except ValueError:
        # Malformed, or sealed under another key: it cannot be opened, and a projector that
        # stopped on it would hold the whole read side back. Shown as erased.
        profile = None
    if profile is None:  # the key is gone: the customer was erased after this event
        _erase(view)
        return
    view.name, view.email = profile.name, profile.email


def _erase(view: UserView) -> None:
    """No personal data left in the row: what erasure promises of the read side."""
    view.name = view.email = None
    view.erased = True


# --- the orders' events -----------------------------------------------------------------------


def apply_order_event(session: Session, event: StoredEvent, category_of: CategoryOf) -> None:
    if event.event_type == EventType.ORDER_PLACED:
        _placed(session, event)
        return
    order = session.get(UserOrder, event.aggregate_id)
    if order is None:  # an event before OrderPlaced (CustomerChecked): nothing to count yet
        return
    view = _view(session, order.customer_id, event.occurred_at)
    data = event.data
    match event.event_type:
        case EventType.ORDER_COMPLETED:  # once per order: the store stores an event once
            _completed(session, view, order, data["total_cents"] or 0)
        case EventType.PAYMENT_REFUNDED if (
            data["outcome"] == Undo.UNDONE and order.points_awarded > order.points_revoked
        ):
            # Loyalty's rule: a refund of a completed order takes back what it earned.
            view.loyalty_points -= order.points_awarded - order.points_revoked
            order.points_revoked = order.points_awarded
        case EventType.INVENTORY_COMMITTED:
            _bought(session, view, data["lines"], category_of)
    _move(view, order, str(STATUS_AFTER.get(event.event_type, order.status)))
    view.updated_at = max(view.updated_at, event.occurred_at)


def revoke_returned_points(session: Session, order_id: str, points: int, at: datetime) -> None:
    """Loyalty took back ``points`` for a return of the order's lines (``PointsRevoked``):
    the customer's view shows the balance loyalty keeps."""
    order = session.get(UserOrder, order_id)
    if order is None or points <= 0:
        return
    view = _view(session, order.customer_id, at)
    view.loyalty_points -= points
    order.points_revoked += points
    view.updated_at = max(view.updated_at, at)


def _placed(session: Session, event: StoredEvent) -> None:
    at, order_id = event.occurred_at, event.aggregate_id
    view = _view(session, event.data["customer_id"], at)
    status = str(STATUS_AFTER[EventType.ORDER_PLACED])
    session.add(
        UserOrder(order_id=order_id, customer_id=view.customer_id, status=status, placed_at=at)
    )
    view.orders += 1
    view.orders_by_status = _count(view.orders_by_status, status, +1)
    if view.last_order_at is None or at >= view.last_order_at:
        if view.last_order_at is not None:
            _day(session, day_of(view.last_order_at)).last_ordered -= 1
        _day(session, day_of(at)).last_ordered += 1
        view.last_order_id, view.last_order_status, view.last_order_at = order_id, status, at
    _seen(_stats(session), day_of(at))
    view.updated_at = max(view.updated_at, at)


def _completed(session: Session, view: UserView, order: UserOrder, total_cents: int) -> None:
    buyers, repeaters = buyer_changes(view.completed_orders, view.completed_orders + 1)
    view.completed_orders += 1
    view.lifetime_spend_cents += total_cents
    stats = _stats(session)
    stats.completed_orders += 1
    stats.completed_cents += total_cents
    stats.buyers += buyers
    stats.repeat_buyers += repeaters
    if not order.points_awarded:  # loyalty awards an order once
        order.points_awarded = points_for(total_cents)
        view.loyalty_points += order.points_awarded


def _bought(
    session: Session, view: UserView, lines: list[dict[str, object]], category_of: CategoryOf
) -> None:
    for line in lines:
        category = category_of(str(line["sku"]))
        row = session.get(UserCategory, (view.customer_id, category))
        if row is None:
            row = UserCategory(customer_id=view.customer_id, category=category)
            session.add(row)
        row.units += int(line["quantity"])  # type: ignore[call-overload]
    session.flush()
    units = session.execute(
        select(UserCategory.category, UserCategory.units).where(
            UserCategory.customer_id == view.customer_id
        )
    )
    view.favourite_categories = favourite_categories({c: n for c, n in units})


def _move(view: UserView, order: UserOrder, status: str) -> None:
    if status == order.status:
        return
    counts = _count(view.orders_by_status, order.status, -1)
    view.orders_by_status = _count(counts, status, +1)
    if view.last_order_id == order.order_id:
        view.last_order_status = status
    order.status = status


def _count(counts: dict[str, int], status: str, change: int) -> dict[str, int]:
    """A new dict (a JSON column is only written back when it is assigned a new value), without
    the statuses that no order has any more."""
    counted = dict(counts)
    counted[status] = counted.get(status, 0) + change
    return {s: n for s, n in counted.items() if n}


# --- rows -------------------------------------------------------------------------------------


def _view(session: Session, customer_id: str, at: datetime) -> UserView:
    """The customer's row; created (a new customer on ``at``'s day) at their first event."""
    view = session.get(UserView, customer_id)
    if view is None:
        view = UserView(customer_id=customer_id, first_seen_at=at, updated_at=at)
        session.add(view)
        stats = _stats(session)
        stats.customers += 1
        _seen(stats, day_of(at))
        _day(session, day_of(at)).new_customers += 1
    return view


def _stats(session: Session) -> CustomerStats:
    stats = session.get(CustomerStats, STATS)
    if stats is None:
        stats = CustomerStats(scope=STATS)
        session.add(stats)
    return stats


def _seen(stats: CustomerStats, day: date) -> None:
    if stats.latest_day is None or day > stats.latest_day:
        stats.latest_day = day


def _day(session: Session, day: date) -> CustomerDay:
    row = session.get(CustomerDay, day)
    if row is None:
        row = CustomerDay(day=day)
        session.add(row)
    return row
