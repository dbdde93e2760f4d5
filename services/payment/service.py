"""Payment: charge an order's amount, resolve a fraud review, refund on compensation.

One charge per order, keyed by the order id. Every change that involves the provider takes two
short transactions around the provider call (see ``ChargeStatus``): first the intent is
committed as a ``*_PENDING`` status, then the provider is called with no lock held, then its
answer is recorded if the status is still the one it answers. Anyone who finds a pending status
repeats the call (the provider is idempotent) and records the answer, so neither a crash nor a
race between a step and its compensation can lose or duplicate money.

A refund that finds the charge still ``PENDING`` (its answer lost in a crash) repeats the charge
request under the same idempotency key to learn the answer: if the first request never reached
the provider, this one does, and the charge is then refunded. Net zero, every cent booked, but
the customer may see the charge and its refund.
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
from cloudmart.contracts.steps import (
    ChargeResult,
    CheckFraud,
    CompensationResult,
    FraudAssessment,
    Undo,
)
from cloudmart.contracts.steps import ChargeStatus as ChargeOutcome
from services.database import (
    get_for_update,
    get_or_tombstone,
    read_only,
    transaction,
    utcnow,
)
from services.payment.fraud import FraudChecks, FraudScreen, SimulatedFraudScreen
from services.payment.models import (
    AWAITING_PROVIDER,
    MONEY_TAKEN,
    Charge,
    ChargeStatus,
    Refund,
    ReturnRefund,
    ReturnRefundStatus,
)
from services.payment.provider import (
    CardDeclined,
    PaymentProvider,
    ProviderCharge,
    ProviderChargeState,
)


class ChargeStillChanging(RuntimeError):
    """A refund kept finding the charge mid-change: transient, retried (its message crosses into
    Temporal as it is, being ours: activities/failures.py)."""


class PaymentTotals(BaseModel):
    charged_cents: int
    refunded_cents: int
    charges_by_status: dict[str, int]

    @property
    def net_cents(self) -> int:
        return self.charged_cents - self.refunded_cents


class PaymentService:
    def __init__(
        self, engine: Engine, provider: PaymentProvider, screen: FraudScreen | None = None
    ) -> None:
        self.engine = engine
        self.provider = provider
        self.fraud = FraudChecks(engine, screen or SimulatedFraudScreen())

    def check_fraud(self, request: CheckFraud) -> FraudAssessment:
        """The fraud screen's verdict before the charge (``FraudSuspected`` if refused)."""
        return self.fraud.check(request)

    def charge(
        self, order_id: str, customer_id: str, token: str, amount_cents: int
    ) -> ChargeResult:
        if amount_cents <= 0:
            raise InvalidTransition(f"order {order_id}: nothing to charge ({amount_cents} cents)")
        with transaction(self.engine) as session:
            if get_for_update(session, Charge, order_id) is None:
                session.add(
                    Charge(
                        order_id=order_id,
                        customer_id=customer_id,
                        amount_cents=amount_cents,
                        status=ChargeStatus.PENDING,
                        payment_token=token,
                    )
                )
        return _answer(self._settle(order_id), amount_cents)

    def resolve_review(self, order_id: str, approved: bool) -> ChargeResult:
        self._settle(order_id)
        with transaction(self.engine) as session:
            row = get_for_update(session, Charge, order_id)
            if row is None:
                raise InvalidTransition(f"order {order_id} has no charge")
            if row.status == ChargeStatus.IN_REVIEW:
                _move(
                    row, ChargeStatus.CAPTURE_PENDING if approved else ChargeStatus.REJECT_PENDING
                )
        row = self._settle(order_id)
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
        """Undo the order's payment: refund a capture, void a held payment, or leave a tombstone."""
        for _ in range(5):
            result = self._undo(order_id, reason)
            if result is not None:
                return result
        # Another party keeps moving the charge (e.g. a capture after review): retry later.
        raise ChargeStillChanging(f"order {order_id}: charge still changing; refund to be retried")

    def _undo(self, order_id: str, reason: str) -> CompensationResult | None:
        """One attempt; None when the charge was mid-change and has just been settled."""
        with transaction(self.engine) as session:
            tombstone = {
                "order_id": order_id,
                "customer_id": "",
                "amount_cents": 0,
                "status": ChargeStatus.TOMBSTONE,
                "undo_reason": reason[:500],
            }
            row, is_new_tombstone = get_or_tombstone(session, Charge, order_id, tombstone)
            found = ChargeStatus(row.status)
            if found == ChargeStatus.CAPTURED:
                _move(row, ChargeStatus.REFUND_PENDING, undo_reason=reason)
            elif found == ChargeStatus.IN_REVIEW:
                _move(row, ChargeStatus.VOID_PENDING, undo_reason=reason)
        match found:
            case ChargeStatus.TOMBSTONE if is_new_tombstone:
                return CompensationResult(
                    outcome=Undo.NOTHING_TO_UNDO, detail="nothing was charged"
                )
            case ChargeStatus.TOMBSTONE | ChargeStatus.DECLINED | ChargeStatus.REJECTED:
                return CompensationResult(
                    outcome=Undo.NOTHING_TO_UNDO, detail=f"charge was {found.lower()}"
                )
            case ChargeStatus.VOIDED | ChargeStatus.REFUNDED:
                return CompensationResult(outcome=Undo.ALREADY_UNDONE)
            case (
                ChargeStatus.CAPTURED
                | ChargeStatus.IN_REVIEW
                | ChargeStatus.REFUND_PENDING
                | (ChargeStatus.VOID_PENDING)
            ):
                settled = self._settle(order_id)
                detail = (
                    f"refunded {settled.amount_cents} cents"
                    if settled.status == ChargeStatus.REFUNDED
                    else "released the payment held for review"
                )
                refunded = settled.amount_cents if settled.status == ChargeStatus.REFUNDED else 0
                return CompensationResult(outcome=Undo.UNDONE, detail=detail, amount_cents=refunded)
        # PENDING (its answer lost in a crash, or still on its way), CAPTURE_PENDING or
        # REJECT_PENDING: settle it, then look again.
        self._settle(order_id)
        return None

    def totals(self) -> PaymentTotals:
        """What was captured and refunded, for reconciliation against completed orders."""
        with Session(read_only(self.engine)) as session:
            by_status = dict(
                session.exec(select(Charge.status, func.count()).group_by(Charge.status)).all()
            )
            charged = session.exec(
                select(func.coalesce(func.sum(Charge.amount_cents), 0)).where(
                    col(Charge.status).in_(MONEY_TAKEN)
                )
            ).one()
            refunded = session.exec(select(func.coalesce(func.sum(Refund.amount_cents), 0))).one()
            returned = session.exec(
                select(func.coalesce(func.sum(ReturnRefund.amount_cents), 0)).where(
                    col(ReturnRefund.status) == ReturnRefundStatus.REFUNDED
                )
            ).one()
            refunded += returned  # the returns' refunds (services/payment/returns.py)
        return PaymentTotals(
            charged_cents=charged, refunded_cents=refunded, charges_by_status=by_status
        )

    # --- settling: one provider call for a pending status, outside any transaction -----------

    def _settle(self, order_id: str) -> Charge:
        """Carry the order's charge out of any ``*_PENDING`` status; returns it as it then is."""
        while True:
            with Session(read_only(self.engine), expire_on_commit=False) as session:
                row = session.get(Charge, order_id)
            if row is None or row.status not in AWAITING_PROVIDER:
                return row  # type: ignore[return-value]  # None only for an unknown order
            answer = self._call_provider(row)
            with transaction(self.engine) as session:
                current = get_for_update(session, Charge, order_id)
                assert current is not None
                if current.status == row.status:  # else someone else recorded it first
                    _record(current, answer)

    def _call_provider(self, row: Charge) -> ProviderCharge | CardDeclined | str | None:
        match row.status:
            case ChargeStatus.PENDING:
                try:
                    return self.provider.charge(
                        idempotency_key=f"charge:{row.order_id}",
                        token=row.payment_token,
                        amount_cents=row.amount_cents,
                    )
                except CardDeclined as declined:
                    return declined
            case ChargeStatus.CAPTURE_PENDING:
                self.provider.capture(reference=_reference(row))
            case ChargeStatus.REJECT_PENDING | ChargeStatus.VOID_PENDING:
                self.provider.void(reference=_reference(row))
            case ChargeStatus.REFUND_PENDING:
                return self.provider.refund(
                    idempotency_key=f"refund:{row.order_id}",
                    reference=_reference(row),
                    amount_cents=row.amount_cents,
                )
        return None


def _move(row: Charge, status: ChargeStatus, *, undo_reason: str | None = None) -> None:
    row.status = status
    if undo_reason is not None:
        row.undo_reason = undo_reason[:500]
    row.updated_at = utcnow()


def _record(row: Charge, answer: ProviderCharge | CardDeclined | str | None) -> None:
    """The provider's answer to the call ``row``'s pending status stands for."""
    match row.status:
        case ChargeStatus.PENDING if isinstance(answer, CardDeclined):
            row.detail = str(answer)
            _move(row, ChargeStatus.DECLINED)
        case ChargeStatus.PENDING:
            assert isinstance(answer, ProviderCharge)
            row.provider_reference = answer.reference
            held = answer.state is ProviderChargeState.IN_REVIEW
            _move(row, ChargeStatus.IN_REVIEW if held else ChargeStatus.CAPTURED)
        case ChargeStatus.CAPTURE_PENDING:
            _move(row, ChargeStatus.CAPTURED)
        case ChargeStatus.REJECT_PENDING:
            row.detail = "rejected in fraud review"
            _move(row, ChargeStatus.REJECTED)
        case ChargeStatus.VOID_PENDING:
            _move(row, ChargeStatus.VOIDED)
        case ChargeStatus.REFUND_PENDING:
            assert isinstance(answer, str)
            session = Session.object_session(row)
            assert session is not None
            session.add(
                Refund(
                    order_id=row.order_id,
                    amount_cents=row.amount_cents,
                    reason=row.undo_reason or "compensation",
                    provider_reference=answer,
                )
            )
            _move(row, ChargeStatus.REFUNDED)


def _reference(row: Charge) -> str:
    if not row.provider_reference:
        raise InvalidTransition(f"order {row.order_id}: {row.status} charge has no reference")
    return row.provider_reference


def _answer(row: Charge | None, amount_cents: int) -> ChargeResult:
    """What a charge request gets, given what is recorded for the order."""
    if row is None:  # pragma: no cover - charge() always writes the row first
        raise InvalidTransition("no charge recorded")
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
