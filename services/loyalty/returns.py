"""Loyalty's part in the return saga (docs/returns.md): once a return is refunded, the points
its lines earned are revoked: the order keeps the points of what it still holds (a point per
whole currency unit of its charge not refunded), the rest are revoked; and ``PointsRevoked``
ends the return's chain.

A handler of services/choreography: it follows the event store (its own checkpoint, inbox and
outbox in loyalty's database, the only one it writes). What an order awarded is what loyalty's
own subscription of the order events (services/loyalty/service.py) recorded; while that
subscription has not yet read as far as the refund, this waits for it (``NotYet``).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session

from cloudmart.contracts.events import StoredEvent
from cloudmart.contracts.returns import VERSION, ReturnEvent, carried
from services.choreography.consumer import NotYet
from services.choreography.outbox import Reaction
from services.database import get_for_update
from services.loyalty.account import POINTS_REVOKED, points_for
from services.loyalty.models import KnownOrder, Subscription
from services.loyalty.service import SUBSCRIPTION, LoyaltyService


class LoyaltyReturns:
    consumer = "loyalty-returns"
    publisher = "loyalty"

    def __init__(self, loyalty: LoyaltyService) -> None:
        self.loyalty = loyalty
        """Whose accounts it changes (in the same database and transaction)."""

    def handles(self, event: StoredEvent) -> bool:
        return event.event_type == ReturnEvent.RETURN_REFUNDED

    def handle(self, session: Session, event: StoredEvent) -> Sequence[Reaction]:
        data = event.data
        subscription = session.get(Subscription, SUBSCRIPTION)
        if subscription is None or subscription.position < event.position:
            raise NotYet("loyalty's subscription has not read the order's events that far")
        known = get_for_update(session, KnownOrder, data["order_id"])
        points = 0
        if known is not None:
            # What the order still holds earns its points; the rest are revoked. (Per return
            # each line's own points would leave the rounding's odd point behind.)
            kept = points_for(data["charged_cents"] - data["order_refunded_cents"])
            points = max(0, known.points_awarded - kept - known.points_revoked)
        if known is not None and points > 0:
            known.points_revoked += points
            self.loyalty.record(
                session,
                known.customer_id,
                POINTS_REVOKED,
                event,
                points=points,
                order_id=known.order_id,
                reason="lines returned",
            )
        reaction = {**carried(data), "points": points}
        return [Reaction(event.aggregate_id, ReturnEvent.POINTS_REVOKED, reaction, VERSION)]
