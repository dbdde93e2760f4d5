"""Payment on a real database: no crash or race loses or duplicates money."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from cloudmart.contracts.failures import AlreadyCompensated, PaymentReviewRejected
from cloudmart.contracts.steps import ChargeStatus, Undo
from cloudmart.settings import Settings
from services.factory import build_payment
from services.payment import PaymentService, SimulatedProvider
from services.payment.provider import ProviderCharge
from tests.support import Gate


class CountingProvider(SimulatedProvider):
    """The simulated provider, counting the money it really moves."""

    def __init__(self) -> None:
        super().__init__()
        self.charged: Counter[str] = Counter()
        self.refunded: Counter[str] = Counter()
        self._seen: set[str] = set()
        self._count_lock = threading.Lock()

    def charge(self, *, idempotency_key: str, token: str, amount_cents: int) -> ProviderCharge:
        result = super().charge(
            idempotency_key=idempotency_key, token=token, amount_cents=amount_cents
        )
        with self._count_lock:
            if idempotency_key not in self._seen:
                self._seen.add(idempotency_key)
                self.charged[idempotency_key] += amount_cents
        return result

    def refund(self, *, idempotency_key: str, reference: str, amount_cents: int) -> str:
        with self._count_lock:
            if idempotency_key not in self._seen:
                self._seen.add(idempotency_key)
                self.refunded[idempotency_key] += amount_cents
        return super().refund(
            idempotency_key=idempotency_key, reference=reference, amount_cents=amount_cents
        )


@pytest.fixture
def provider() -> CountingProvider:
    return CountingProvider()


@pytest.fixture
def payment(settings: Settings, provider: CountingProvider) -> PaymentService:
    service = build_payment(settings, provider=provider)
    service.create_schema()
    return service


def test_a_crash_after_the_provider_charged_is_recovered_by_the_retry(
    payment: PaymentService, provider: CountingProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*_: object) -> None:
        raise ConnectionError("worker lost its database connection")

    with monkeypatch.context() as patch:
        patch.setattr("services.payment.service._record", crash)
        with pytest.raises(ConnectionError):
            payment.charge("o-1", "c-1", "tok_ok", 1500)
    assert payment.totals().charges_by_status == {"PENDING": 1}

    result = payment.charge("o-1", "c-1", "tok_ok", 1500)
    assert result.status is ChargeStatus.CAPTURED
    assert sum(provider.charged.values()) == 1500  # the provider moved money once
    assert payment.totals().charged_cents == 1500


def test_a_crash_after_the_provider_charged_is_refunded_by_the_compensation(
    payment: PaymentService, provider: CountingProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr("services.payment.service._record", lambda *_: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            payment.charge("o-1", "c-1", "tok_ok", 1500)

    assert payment.refund("o-1", "saga failed").outcome is Undo.UNDONE
    assert sum(provider.charged.values()) == sum(provider.refunded.values()) == 1500
    totals = payment.totals()
    assert (totals.charged_cents, totals.refunded_cents) == (1500, 1500)


def test_a_charge_landing_after_its_refund_is_refused_and_costs_nothing(
    payment: PaymentService, provider: CountingProvider
) -> None:
    gate = Gate()
    original = provider.charge
    calls = 0

    def slow_first_call(**kwargs: object) -> ProviderCharge:
        nonlocal calls
        calls += 1
        if calls == 1:
            gate.pass_()
        return original(**kwargs)  # type: ignore[arg-type]

    provider.charge = slow_first_call  # type: ignore[method-assign]
    with ThreadPoolExecutor(1) as pool:
        late_charge = pool.submit(payment.charge, "o-1", "c-1", "tok_ok", 1500)
        gate.wait_entered()
        assert payment.refund("o-1", "cancelled").outcome is Undo.UNDONE
        gate.open()
        with pytest.raises(AlreadyCompensated):
            late_charge.result(10)
    assert sum(provider.charged.values()) == sum(provider.refunded.values()) == 1500
    assert payment.totals().net_cents == 0


def test_refund_before_any_charge_leaves_a_tombstone(
    payment: PaymentService, provider: CountingProvider
) -> None:
    assert payment.refund("o-1", "cancelled").outcome is Undo.NOTHING_TO_UNDO
    with pytest.raises(AlreadyCompensated):
        payment.charge("o-1", "c-1", "tok_ok", 1500)
    assert not provider.charged


def test_review_approval_captures_and_rejection_moves_no_money(payment: PaymentService) -> None:
    assert payment.charge("o-1", "c", "tok_review", 700).status is ChargeStatus.REVIEW_REQUIRED
    assert payment.charge("o-2", "c", "tok_review", 300).status is ChargeStatus.REVIEW_REQUIRED
    assert payment.totals().charged_cents == 0

    assert payment.resolve_review("o-1", approved=True).status is ChargeStatus.CAPTURED
    assert payment.resolve_review("o-1", approved=True).status is ChargeStatus.CAPTURED
    for _ in range(2):
        with pytest.raises(PaymentReviewRejected):
            payment.resolve_review("o-2", approved=False)
    assert payment.refund("o-2", "rejected").outcome is Undo.NOTHING_TO_UNDO
    totals = payment.totals()
    assert (totals.charged_cents, totals.refunded_cents) == (700, 0)


def test_refunding_a_held_payment_voids_it(payment: PaymentService) -> None:
    payment.charge("o-1", "c", "tok_review", 700)
    assert payment.refund("o-1", "review timed out").outcome is Undo.UNDONE
    assert payment.totals().charges_by_status == {"VOIDED": 1}
    assert payment.totals().net_cents == 0
    with pytest.raises(AlreadyCompensated):
        payment.resolve_review("o-1", approved=True)
