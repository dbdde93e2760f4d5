"""Payment on real databases: no crash or race loses or duplicates money.

Every check is made against the provider's own ledger (what it really charged and refunded) as
well as against payment's books.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from cloudmart.contracts.failures import (
    AlreadyCompensated,
    FraudSuspected,
    PaymentReviewRejected,
)
from cloudmart.contracts.steps import ChargeStatus, CheckFraud, FraudAssessment, Undo
from cloudmart.settings import Settings
from services.factory import build_payment, prepare
from services.payment import PaymentService, SimulatedProvider
from tests.support import Gate


@pytest.fixture
def payment(settings: Settings) -> PaymentService:
    service = build_payment(settings)
    prepare(service, settings)
    return service


def provider_of(payment: PaymentService) -> SimulatedProvider:
    assert isinstance(payment.provider, SimulatedProvider)
    return payment.provider


def moved(payment: PaymentService) -> tuple[int, int]:
    """(captured, refunded) cents, as the provider's ledger has them."""
    ledger = provider_of(payment).ledger()
    return ledger.captured_cents, ledger.refunded_cents


def crash_before_recording(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*_: object) -> None:
        raise ConnectionError("worker lost its database connection")

    monkeypatch.setattr("services.payment.service._record", crash)


def hold_first_call(monkeypatch: pytest.MonkeyPatch, target: Any, method: str) -> Gate:
    gate, original, calls = Gate(), getattr(target, method), []

    def held(**kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            gate.pass_()
        return original(**kwargs)

    monkeypatch.setattr(target, method, held)
    return gate


def test_a_crash_after_the_provider_charged_is_recovered_by_the_retry(
    payment: PaymentService, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        crash_before_recording(patch)
        with pytest.raises(ConnectionError):
            payment.charge("o-1", "c-1", "tok_ok", 1500)
    assert payment.totals().charges_by_status == {"PENDING": 1}
    assert moved(payment) == (1500, 0)  # the provider did charge

    assert payment.charge("o-1", "c-1", "tok_ok", 1500).status is ChargeStatus.CAPTURED
    assert moved(payment) == (1500, 0)  # and only once
    assert payment.totals().charged_cents == 1500


def test_a_crash_after_the_provider_charged_is_refunded_by_the_compensation(
    payment: PaymentService, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        crash_before_recording(patch)
        with pytest.raises(ConnectionError):
            payment.charge("o-1", "c-1", "tok_ok", 1500)

    assert payment.refund("o-1", "saga failed").outcome is Undo.UNDONE
    assert moved(payment) == (1500, 1500)
    totals = payment.totals()
    assert (totals.charged_cents, totals.refunded_cents) == (1500, 1500)


def test_a_crash_after_the_refund_was_decided_is_finished_by_the_retry(
    payment: PaymentService, monkeypatch: pytest.MonkeyPatch
) -> None:
    payment.charge("o-1", "c-1", "tok_ok", 1500)
    with monkeypatch.context() as patch:
        crash_before_recording(patch)
        with pytest.raises(ConnectionError):
            payment.refund("o-1", "cancelled")
    assert payment.totals().charges_by_status == {"REFUND_PENDING": 1}

    assert payment.refund("o-1", "cancelled").outcome is Undo.UNDONE
    assert payment.refund("o-1", "cancelled").outcome is Undo.ALREADY_UNDONE
    assert moved(payment) == (1500, 1500)
    assert payment.totals().refunded_cents == 1500


def test_a_charge_landing_after_its_refund_is_refused_and_costs_nothing(
    payment: PaymentService, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = hold_first_call(monkeypatch, provider_of(payment), "charge")
    with ThreadPoolExecutor(1) as pool:
        late_charge = pool.submit(payment.charge, "o-1", "c-1", "tok_ok", 1500)
        gate.wait_entered()
        assert payment.refund("o-1", "cancelled").outcome is Undo.UNDONE
        gate.open()
        with pytest.raises(AlreadyCompensated):
            late_charge.result(10)
    assert moved(payment) == (1500, 1500)
    assert payment.totals().net_cents == 0


def test_a_slow_provider_does_not_hold_up_other_orders(
    payment: PaymentService, monkeypatch: pytest.MonkeyPatch
) -> None:
    payment.charge("o-1", "c-1", "tok_ok", 1500)
    gate = hold_first_call(monkeypatch, provider_of(payment), "refund")
    with ThreadPoolExecutor(2) as pool:
        slow_refund = pool.submit(payment.refund, "o-1", "cancelled")
        gate.wait_entered()
        other = pool.submit(payment.charge, "o-2", "c-2", "tok_ok", 700)
        assert other.result(timeout=3).status is ChargeStatus.CAPTURED
        assert payment.totals().charges_by_status == {"REFUND_PENDING": 1, "CAPTURED": 1}
        gate.open()
        assert slow_refund.result(10).outcome is Undo.UNDONE


def test_refund_before_any_charge_leaves_a_tombstone(payment: PaymentService) -> None:
    assert payment.refund("o-1", "cancelled").outcome is Undo.NOTHING_TO_UNDO
    assert payment.refund("o-1", "cancelled").outcome is Undo.NOTHING_TO_UNDO
    with pytest.raises(AlreadyCompensated):
        payment.charge("o-1", "c-1", "tok_ok", 1500)
    assert moved(payment) == (0, 0)


def test_review_approval_captures_and_rejection_moves_no_money(payment: PaymentService) -> None:
    assert payment.charge("o-1", "c", "tok_review", 700).status is ChargeStatus.REVIEW_REQUIRED
    assert payment.charge("o-2", "c", "tok_review", 300).status is ChargeStatus.REVIEW_REQUIRED
    assert moved(payment) == (0, 0)

    assert payment.resolve_review("o-1", approved=True).status is ChargeStatus.CAPTURED
    assert payment.resolve_review("o-1", approved=True).status is ChargeStatus.CAPTURED
    for _ in range(2):
        with pytest.raises(PaymentReviewRejected):
            payment.resolve_review("o-2", approved=False)
    assert payment.refund("o-2", "rejected").outcome is Undo.NOTHING_TO_UNDO
    assert moved(payment) == (700, 0)
    totals = payment.totals()
    assert (totals.charged_cents, totals.refunded_cents) == (700, 0)


def test_refunding_a_held_payment_voids_it(payment: PaymentService) -> None:
    payment.charge("o-1", "c", "tok_review", 700)
    assert payment.refund("o-1", "review timed out").outcome is Undo.UNDONE
    assert payment.totals().charges_by_status == {"VOIDED": 1}
    assert moved(payment) == (0, 0)
    with pytest.raises(AlreadyCompensated):
        payment.resolve_review("o-1", approved=True)


def test_the_provider_remembers_across_restarts(payment: PaymentService) -> None:
    first = provider_of(payment).charge(idempotency_key="k", token="tok_ok", amount_cents=5)
    restarted = SimulatedProvider(provider_of(payment).engine)
    again = restarted.charge(idempotency_key="k", token="tok_ok", amount_cents=5)
    assert again == first
    assert restarted.ledger().captured_by_key == {"k": 5}


# --- the fraud screen ---------------------------------------------------------------------


def fraud_check(order_id: str, token: str = "tok_ok", amount_cents: int = 2000) -> CheckFraud:
    return CheckFraud(
        order_id=order_id,
        customer_id="c-1",
        payment_token=token,
        amount_cents=amount_cents,
        country="DE",
    )


def test_the_fraud_screen_passes_an_ordinary_order(payment: PaymentService) -> None:
    verdict = payment.check_fraud(fraud_check("o-1"))
    assert (verdict.score, verdict.reasons) == (0, [])


def test_the_fraud_screen_refuses_a_stolen_card_and_a_large_order_only_weighs(
    payment: PaymentService,
) -> None:
    with pytest.raises(FraudSuspected, match="score 95: card reported stolen"):
        payment.check_fraud(fraud_check("o-1", token="tok_fraud"))
    large = payment.check_fraud(fraud_check("o-2", amount_cents=600_000))
    assert (large.score, large.reasons) == (50, ["unusually large order"])
    with pytest.raises(FraudSuspected, match="score 100"):
        payment.check_fraud(fraud_check("o-3", token="tok_fraud", amount_cents=600_000))


def test_a_retried_fraud_check_gets_the_first_verdict(
    payment: PaymentService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Screens drift; an order must see one decision, whatever a retry would be told now."""
    payment.check_fraud(fraud_check("o-1"))
    monkeypatch.setattr(
        payment.fraud.screen,
        "assess",
        lambda request: FraudAssessment(order_id=request.order_id, score=99, reasons=["drift"]),
    )
    assert payment.check_fraud(fraud_check("o-1")).score == 0
    with pytest.raises(FraudSuspected):
        payment.check_fraud(fraud_check("o-2"))
    with pytest.raises(FraudSuspected):  # and a refusal stays a refusal
        payment.check_fraud(fraud_check("o-2"))
