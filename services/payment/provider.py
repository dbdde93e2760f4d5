"""The payment provider: outside the system, so it sits behind one interface and is simulated.

Like a card processor's test mode, the outcome is chosen by the token:

- ``tok_ok``: approved and captured;
- ``tok_decline``: declined by the issuer (a business failure);
- ``tok_review``: held for fraud review until captured or voided;
- ``tok_flaky``: the provider is unavailable for the first two attempts, then approves;
- anything else: declined as an unknown token.

Every call that moves money takes an idempotency key, as real providers do: repeating a request
with the same key returns the first answer and moves no more money.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel


class ProviderUnavailable(Exception):
    """A transient provider error (timeout, 5xx): safe to retry with the same idempotency key."""


class CardDeclined(Exception):
    """The provider refused the payment; retrying will not change that."""


class ProviderChargeState(StrEnum):
    CAPTURED = "captured"
    IN_REVIEW = "in_review"


class ProviderCharge(BaseModel):
    reference: str
    state: ProviderChargeState


class PaymentProvider(Protocol):
    def charge(self, *, idempotency_key: str, token: str, amount_cents: int) -> ProviderCharge: ...

    def capture(self, *, reference: str) -> None:
        """Capture a charge held for review."""

    def void(self, *, reference: str) -> None:
        """Release a charge held for review; no money moves."""

    def refund(self, *, idempotency_key: str, reference: str, amount_cents: int) -> str:
        """Refund a captured charge; returns the refund's reference."""


class SimulatedProvider:
    """An in-memory provider with test tokens; thread-safe, as activities run in threads."""

    def __init__(self, flaky_failures: int = 2) -> None:
        self._flaky_failures = flaky_failures
        self._lock = threading.Lock()
        self._charges: dict[str, ProviderCharge] = {}
        self._refunds: dict[str, str] = {}
        self._attempts: Counter[str] = Counter()

    def charge(self, *, idempotency_key: str, token: str, amount_cents: int) -> ProviderCharge:
        with self._lock:
            if idempotency_key in self._charges:
                return self._charges[idempotency_key]
            self._attempts[idempotency_key] += 1
            attempt = self._attempts[idempotency_key]
            match token:
                case "tok_ok":
                    state = ProviderChargeState.CAPTURED
                case "tok_review":
                    state = ProviderChargeState.IN_REVIEW
                case "tok_flaky" if attempt <= self._flaky_failures:
                    raise ProviderUnavailable(f"payment provider timed out (attempt {attempt})")
                case "tok_flaky":
                    state = ProviderChargeState.CAPTURED
                case "tok_decline":
                    raise CardDeclined("card declined by the issuer")
                case _:
                    raise CardDeclined("unknown payment token")
            charge = ProviderCharge(reference=f"ch_{uuid.uuid4().hex[:20]}", state=state)
            self._charges[idempotency_key] = charge
            return charge

    def capture(self, *, reference: str) -> None:
        return None

    def void(self, *, reference: str) -> None:
        return None

    def refund(self, *, idempotency_key: str, reference: str, amount_cents: int) -> str:
        with self._lock:
            return self._refunds.setdefault(idempotency_key, f"re_{uuid.uuid4().hex[:20]}")
