"""Payment's part in the return saga (docs/returns.md): once a return's lines are back in stock,
refund exactly their amount through the provider; never more than the order's charge, across
all of its returns (and a compensation's refund, had there been one).

A handler of services/choreography: it follows the event store (its own checkpoint, inbox and
outbox in payment's database, the only one it writes) and publishes ``ReturnRefunded``, or
``ReturnRefundRefused`` when the provider refuses the refund for good, which inventory then
compensates. A provider that is unavailable fails the attempt: retried, and parked after the
consumer's attempts (visible on the return).

The provider is called inside the consumer's transaction, holding the order's charge row: two
returns of one order are refunded one after the other, each against what the other left. The
call's idempotency key is the return's (``return:<id>``): a transaction that rolls back after
the provider answered (a crash before the commit) calls again and gets the same refund, never a
second one. (The saga's own steps never call the provider in a transaction: their pending
statuses do that job, payment/service.py; here the inbox and the key do it.)
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func
from sqlmodel import Session, col, select

from cloudmart.contracts.events import StoredEvent
from cloudmart.contracts.returns import VERSION, ReturnEvent, amount_of, carried
from services.choreography.outbox import Reaction
from services.database import get_for_update
from services.payment.models import (
    Charge,
    ChargeStatus,
    Refund,
    ReturnRefund,
    ReturnRefundStatus,
)
from services.payment.provider import PaymentProvider, ProviderRefused


class PaymentReturns:
    consumer = "payment-returns"
    publisher = "payment"

    def __init__(self, provider: PaymentProvider) -> None:
        self.provider = provider

    def handles(self, event: StoredEvent) -> bool:
        return event.event_type == ReturnEvent.STOCK_RESTOCKED

    def handle(self, session: Session, event: StoredEvent) -> Sequence[Reaction]:
        data = event.data
        charge = get_for_update(session, Charge, data["order_id"])
        refund = session.get(ReturnRefund, data["return_id"])
        if refund is None:
            refund = self._refund(session, charge, data["return_id"], amount_of(data["lines"]))
            session.add(refund)
            session.flush()
        if refund.status == ReturnRefundStatus.REFUSED:
            reaction = {**carried(data), "reason": refund.detail}
            return [Reaction(event.aggregate_id, ReturnEvent.RETURN_REFUND_REFUSED, reaction)]
        assert charge is not None
        reaction = {
            **carried(data),
            "amount_cents": refund.amount_cents,
            "order_refunded_cents": _refunded(session, charge.order_id),
            "charged_cents": charge.amount_cents,
        }
        return [Reaction(event.aggregate_id, ReturnEvent.RETURN_REFUNDED, reaction, VERSION)]

    def _refund(
        self, session: Session, charge: Charge | None, return_id: str, amount: int
    ) -> ReturnRefund:
        def refused(detail: str, amount_cents: int = 0) -> ReturnRefund:
            return ReturnRefund(
                return_id=return_id,
                order_id=charge.order_id if charge else "",
                amount_cents=amount_cents,
                status=ReturnRefundStatus.REFUSED,
                detail=detail[:500],
            )

        if charge is None or charge.status != ChargeStatus.CAPTURED:
            return refused(f"no captured charge ({charge.status if charge else 'none'})")
        left = charge.amount_cents - _refunded(session, charge.order_id)
        amount = min(amount, left)
        if amount <= 0:
            return refused("nothing of the order's charge is left to refund")
        assert charge.provider_reference is not None  # captured
        try:
            reference = self.provider.refund(
                idempotency_key=f"return:{return_id}",
                reference=charge.provider_reference,
                amount_cents=amount,
            )
        except ProviderRefused as err:
            return refused(f"the provider refused the refund: {err}", amount)
        return ReturnRefund(
            return_id=return_id,
            order_id=charge.order_id,
            amount_cents=amount,
            status=ReturnRefundStatus.REFUNDED,
            provider_reference=reference,
        )


def _refunded(session: Session, order_id: str) -> int:
    """What the order has had back so far: its returns' refunds and a compensation's."""
    returns = session.exec(
        select(func.coalesce(func.sum(ReturnRefund.amount_cents), 0)).where(
            ReturnRefund.order_id == order_id,
            col(ReturnRefund.status) == ReturnRefundStatus.REFUNDED,
        )
    ).one()
    compensation = session.exec(
        select(func.coalesce(func.sum(Refund.amount_cents), 0)).where(Refund.order_id == order_id)
    ).one()
    return int(returns) + int(compensation)
