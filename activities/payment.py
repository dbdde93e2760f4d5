from __future__ import annotations

from temporalio import activity

from activities.failures import failures_for_temporal
from cloudmart.contracts import activities as spec
from cloudmart.contracts.steps import (
    ChargePayment,
    ChargeResult,
    CheckFraud,
    Compensate,
    CompensationResult,
    FraudAssessment,
    ResolvePaymentReview,
)
from services.payment import PaymentService


class PaymentActivities:
    def __init__(self, payment: PaymentService) -> None:
        self._payment = payment

    @activity.defn(name=spec.CHECK_FRAUD.name)
    @failures_for_temporal
    def check_fraud(self, request: CheckFraud) -> FraudAssessment:
        return self._payment.check_fraud(request)

    @activity.defn(name=spec.CHARGE_PAYMENT.name)
    @failures_for_temporal
    def charge(self, request: ChargePayment) -> ChargeResult:
        return self._payment.charge(
            request.order_id, request.customer_id, request.payment_token, request.amount_cents
        )

    @activity.defn(name=spec.RESOLVE_PAYMENT_REVIEW.name)
    @failures_for_temporal
    def resolve_review(self, request: ResolvePaymentReview) -> ChargeResult:
        return self._payment.resolve_review(request.order_id, request.approved)

    @activity.defn(name=spec.REFUND_PAYMENT.name)
    @failures_for_temporal
    def refund(self, request: Compensate) -> CompensationResult:
        return self._payment.refund(request.order_id, request.reason)

    def all(self) -> list[object]:
        return [self.check_fraud, self.charge, self.resolve_review, self.refund]
