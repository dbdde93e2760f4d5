"""Payment: charge an order's amount, resolve a fraud review, refund on compensation.

One charge per order, keyed by the order id. The intent is recorded (PENDING) before the
provider is called, so that a crash between the provider's answer and our record cannot lose
money: whoever finds the charge PENDING next (a retry or the refund) repeats the provider request
under the same idempotency key, learns the answer, and records it.
"""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from cloudmart.contracts.failures import (
    AlreadyCompensated,
    InvalidTransition,
    PaymentDeclined,
    PaymentReviewRejected,
)
from cloudmart.contracts.steps import ChargeResult, CompensationResult, Undo
from cloudmart.contracts.steps import ChargeStatus as ChargeOutcome
from services.database import get_for_update, get_or_tombstone, transaction, utcnow
from services.payment.models import MONEY_TAKEN, Charge, ChargeStatus, PaymentTable, Refund
from services.payment.provider import (
    CardDeclined,
    PaymentProvider,
    ProviderCharge,
    ProviderChargeState,
)


class PaymentTotals(BaseModel):
    charged_cents: int
    refunded_cents: int
    charges_by_status: dict[str, int]

    @property
    def net_cents(self) -> int:
        return self.charged_cents - self.refunded_cents


class PaymentService:
    def __init__(self, engine: Engine, provider: PaymentProvider) -> None:
        self.engine = engine
        self._provider = provider

    def create_schema(self) -> None:
        PaymentTable.metadata.create_all(self.engine)

    def charge(
        self, order_id: str, customer_id: str, token: str, amount_cents: int
    ) -> ChargeResult:
        if amount_cents <= 0:
            raise InvalidTransition(f"order {order_id}: nothing to charge ({amount_cents} cents)")
        with transaction(self.engine) as session:
            row = get_for_update(session, Charge, order_id)
            if row is None:
                session.add(
                    Charge(
                        order_id=order_id,
                        customer_id=customer_id,
                        amount_cents=amount_cents,
                        status=ChargeStatus.PENDING,
                        payment_token=token,
                    )
                )
            elif row.status != ChargeStatus.PENDING:
                return _answer(row, amount_cents)
        answer = self._ask_provider(order_id, token, amount_cents)
        with transaction(self.engine) as session:
            row = _existing(session, order_id)
            # A refund may have settled the charge while we were asking: its record stands.
            if row.status == ChargeStatus.PENDING:
                _record(row, answer)
        return _answer(row, amount_cents)

    def resolve_review(self, order_id: str, approved: bool) -> ChargeResult:
        with transaction(self.engine) as session:
            row = _existing(session, order_id)
            if row.status == ChargeStatus.IN_REVIEW:
                reference = _reference(row)
                if approved:
                    self._provider.capture(reference=reference)
                    row.status = ChargeStatus.CAPTURED
                else:
                    self._provider.void(reference=reference)
                    row.status = ChargeStatus.REJECTED
                    row.detail = "rejected in fraud review"
                row.updated_at = utcnow()
        if approved and row.status == ChargeStatus.CAPTURED:
            return _answer(row, row.amount_cents)
        if not approved and row.status == ChargeStatus.REJECTED:
            raise PaymentReviewRejected(
                f"payment for order {order_id} was rejected in fraud review"
            )
        if row.status in (ChargeStatus.VOIDED, ChargeStatus.REFUNDED, ChargeStatus.TOMBSTONE):
            raise AlreadyCompensated(f"payment for order {order_id} was already undone")
        decision = "approval" if approved else "rejection"
        raise InvalidTransition(f"order {order_id}: {decision} of a {row.status} charge")

    def refund(self, order_id: str, reason: str) -> CompensationResult:
        with transaction(self.engine) as session:
            tombstone = {
                "order_id": order_id,
                "customer_id": "",
                "amount_cents": 0,
                "status": ChargeStatus.TOMBSTONE,
            }
            row, _ = get_or_tombstone(session, Charge, order_id, tombstone)
            if row.status == ChargeStatus.PENDING:
                _record(row, self._ask_provider(order_id, row.payment_token, row.amount_cents))
            match row.status:
                case ChargeStatus.TOMBSTONE:
                    return CompensationResult(
                        outcome=Undo.NOTHING_TO_UNDO, detail="nothing was charged"
                    )
                case ChargeStatus.DECLINED | ChargeStatus.REJECTED:
                    return CompensationResult(
                        outcome=Undo.NOTHING_TO_UNDO, detail=f"charge was {row.status.lower()}"
                    )
                case ChargeStatus.VOIDED | ChargeStatus.REFUNDED:
                    return CompensationResult(outcome=Undo.ALREADY_UNDONE)
                case ChargeStatus.IN_REVIEW:
                    self._provider.void(reference=_reference(row))
                    row.status = ChargeStatus.VOIDED
                    detail = "released the payment held for review"
                case ChargeStatus.CAPTURED:
                    refund_reference = self._provider.refund(
                        idempotency_key=f"refund:{order_id}",
                        reference=_reference(row),
                        amount_cents=row.amount_cents,
                    )
                    session.add(
                        Refund(
                            order_id=order_id,
                            amount_cents=row.amount_cents,
                            reason=reason[:500],
                            provider_reference=refund_reference,
                        )
                    )
                    row.status = ChargeStatus.REFUNDED
                    detail = f"refunded {row.amount_cents} cents"
                case _:
                    raise InvalidTransition(
                        f"order {order_id}: cannot refund a {row.status} charge"
                    )
            row.updated_at = utcnow()
            return CompensationResult(outcome=Undo.UNDONE, detail=detail)

    def totals(self) -> PaymentTotals:
        """What was captured and refunded, for reconciliation against completed orders."""
        with Session(self.engine) as session:
            by_status = dict(
                session.exec(select(Charge.status, func.count()).group_by(Charge.status)).all()
            )
            charged = session.exec(
                select(func.coalesce(func.sum(Charge.amount_cents), 0)).where(
                    col(Charge.status).in_(MONEY_TAKEN)
                )
            ).one()
            refunded = session.exec(select(func.coalesce(func.sum(Refund.amount_cents), 0))).one()
        return PaymentTotals(
            charged_cents=charged, refunded_cents=refunded, charges_by_status=by_status
        )

    def _ask_provider(
        self, order_id: str, token: str, amount_cents: int
    ) -> ProviderCharge | CardDeclined:
        """The provider's answer for this order's charge; transient errors propagate (retry)."""
        try:
            return self._provider.charge(
                idempotency_key=f"charge:{order_id}", token=token, amount_cents=amount_cents
            )
        except CardDeclined as declined:
            return declined


def _existing(session: Session, order_id: str) -> Charge:
    row = get_for_update(session, Charge, order_id)
    if row is None:
        raise InvalidTransition(f"order {order_id} has no charge")
    return row


def _record(row: Charge, answer: ProviderCharge | CardDeclined) -> None:
    if isinstance(answer, CardDeclined):
        row.status = ChargeStatus.DECLINED
        row.detail = str(answer)
    else:
        row.status = (
            ChargeStatus.CAPTURED
            if answer.state is ProviderChargeState.CAPTURED
            else ChargeStatus.IN_REVIEW
        )
        row.provider_reference = answer.reference
    row.updated_at = utcnow()


def _reference(row: Charge) -> str:
    if not row.provider_reference:
        raise InvalidTransition(
            f"order {row.order_id}: {row.status} charge has no provider reference"
        )
    return row.provider_reference


def _answer(row: Charge, amount_cents: int) -> ChargeResult:
    """What a charge request gets, given what is recorded for the order."""
    match row.status:
        case ChargeStatus.CAPTURED | ChargeStatus.IN_REVIEW if row.amount_cents != amount_cents:
            raise InvalidTransition(
                f"order {row.order_id} was charged {row.amount_cents} cents, not {amount_cents}"
            )
        case ChargeStatus.CAPTURED:
            status = ChargeOutcome.CAPTURED
        case ChargeStatus.IN_REVIEW:
            status = ChargeOutcome.REVIEW_REQUIRED
        case ChargeStatus.DECLINED:
            raise PaymentDeclined(f"payment declined: {row.detail}")
        case ChargeStatus.REJECTED:
            raise PaymentReviewRejected(f"payment for order {row.order_id} was rejected in review")
        case _:
            raise AlreadyCompensated(
                f"payment for order {row.order_id} was already undone ({row.status}); not charging"
            )
    return ChargeResult(
        order_id=row.order_id,
        status=status,
        amount_cents=row.amount_cents,
        reference=_reference(row),
    )
