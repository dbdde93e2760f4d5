"""The payment provider: outside the system, so it sits behind one interface and is simulated.

Like a card processor's test mode, the outcome is chosen by the token:

- ``tok_ok``: approved and captured;
- ``tok_decline``: declined by the issuer (a business failure);
- ``tok_review``: held for fraud review until captured or voided;
- ``tok_flaky``: the provider is unavailable for the first two attempts, then approves;
- ``tok_norefund``: approved and captured, but every refund of it is refused for good (the
  issuer no longer takes money back to the card): what leaves a return stuck for an operator;
- anything else: declined as an unknown token.

As with a real provider, repeating a request changes nothing: a charge or refund with an
idempotency key already used returns the first answer; capturing or voiding a charge twice is a
no-op. The simulator keeps its ledger in a database of its own (it is another company's system),
so it remembers across worker restarts and is shared by every payment worker, and the
reconciliation can check what it really charged.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel
from sqlalchemy import Engine, func
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, select

from services.database import get_for_update, read_only, transaction

NO_REFUNDS = "ch_norefund_"
"""The reference of a ``tok_norefund`` charge starts so: its refunds are refused."""


class ProviderUnavailable(Exception):
    """A transient provider error (timeout, 5xx): safe to retry with the same idempotency key."""


class CardDeclined(Exception):
    """The provider refused the payment; retrying will not change that."""


class ProviderRefused(Exception):
    """A request the provider cannot honour (e.g. capturing a voided charge): a bug upstream."""


class ProviderChargeState(StrEnum):
    CAPTURED = "captured"
    IN_REVIEW = "in_review"
    VOIDED = "voided"


class ProviderCharge(BaseModel):
    reference: str
    state: ProviderChargeState


class PaymentProvider(Protocol):
    def charge(self, *, idempotency_key: str, token: str, amount_cents: int) -> ProviderCharge:
        """Charge the card; a charge held for review is captured or voided later."""

    def capture(self, *, reference: str) -> None:
        """Capture a charge held for review."""

    def void(self, *, reference: str) -> None:
        """Release a charge held for review; no money moves."""

    def refund(self, *, idempotency_key: str, reference: str, amount_cents: int) -> str:
        """Refund a captured charge; returns the refund's reference."""


class ProviderLedger(BaseModel):
    captured_cents: int
    refunded_cents: int
    captured_by_key: dict[str, int]


class ProviderTable(SQLModel, registry=registry()):
    """The simulator's own tables, in its own database."""


class SimulatedCharge(ProviderTable, table=True):
    __tablename__ = "provider_charges"

    idempotency_key: str = Field(primary_key=True, max_length=100)
    attempts: int = 0
    reference: str | None = Field(default=None, unique=True, max_length=40)
    state: str | None = Field(default=None, max_length=16)
    amount_cents: int = 0


class SimulatedRefund(ProviderTable, table=True):
    __tablename__ = "provider_refunds"

    idempotency_key: str = Field(primary_key=True, max_length=100)
    reference: str = Field(unique=True, max_length=40)
    charge_reference: str = Field(max_length=40)
    amount_cents: int


class SimulatedProvider:
    def __init__(self, engine: Engine, flaky_failures: int = 2) -> None:
        self.engine = engine
        self._flaky_failures = flaky_failures

    def create_schema(self) -> None:
        ProviderTable.metadata.create_all(self.engine)

    def charge(self, *, idempotency_key: str, token: str, amount_cents: int) -> ProviderCharge:
        with transaction(self.engine) as session:
            row = get_for_update(session, SimulatedCharge, idempotency_key)
            if row is None:
                row = SimulatedCharge(idempotency_key=idempotency_key)
                session.add(row)
            if row.reference is not None and row.state is not None:
                return ProviderCharge(reference=row.reference, state=ProviderChargeState(row.state))
            row.attempts += 1
            outcome = self._decide(token, row.attempts)
            if isinstance(outcome, ProviderChargeState):
                prefix = NO_REFUNDS if token == "tok_norefund" else "ch_"
                row.reference = f"{prefix}{uuid.uuid4().hex[:20]}"
                row.state = outcome
                row.amount_cents = amount_cents
                return ProviderCharge(reference=row.reference, state=outcome)
        raise outcome  # after the commit: the attempt is counted

    def _decide(self, token: str, attempt: int) -> ProviderChargeState | Exception:
        match token:
            case "tok_ok":
                return ProviderChargeState.CAPTURED
            case "tok_review":
                return ProviderChargeState.IN_REVIEW
            case "tok_flaky" if attempt <= self._flaky_failures:
                return ProviderUnavailable(f"payment provider timed out (attempt {attempt})")
            case "tok_flaky" | "tok_norefund":
                return ProviderChargeState.CAPTURED
            case "tok_decline":
                return CardDeclined("card declined by the issuer")
            case _:
                return CardDeclined("unknown payment token")

    def capture(self, *, reference: str) -> None:
        self._settle_review(reference, ProviderChargeState.CAPTURED)

    def void(self, *, reference: str) -> None:
        self._settle_review(reference, ProviderChargeState.VOIDED)

    def _settle_review(self, reference: str, to: ProviderChargeState) -> None:
        with transaction(self.engine) as session:
            row = session.exec(
                select(SimulatedCharge).where(SimulatedCharge.reference == reference)
            ).one_or_none()
            if row is None:
                raise ProviderRefused(f"no charge {reference}")
            if row.state == ProviderChargeState.IN_REVIEW:
                row.state = to
            elif row.state != to:
                raise ProviderRefused(f"charge {reference} is {row.state}, cannot become {to}")

    def refund(self, *, idempotency_key: str, reference: str, amount_cents: int) -> str:
        with transaction(self.engine) as session:
            existing = session.get(SimulatedRefund, idempotency_key)
            if existing is not None:
                return existing.reference
            charge = session.exec(
                select(SimulatedCharge).where(SimulatedCharge.reference == reference)
            ).one_or_none()
            if charge is None or charge.state != ProviderChargeState.CAPTURED:
                raise ProviderRefused(f"charge {reference} cannot be refunded")
            if reference.startswith(NO_REFUNDS):
                raise ProviderRefused(f"the issuer refuses refunds to the card of {reference}")
            if amount_cents > charge.amount_cents:
                raise ProviderRefused(f"refund of {amount_cents} exceeds charge {reference}")
            refund = SimulatedRefund(
                idempotency_key=idempotency_key,
                reference=f"re_{uuid.uuid4().hex[:20]}",
                charge_reference=reference,
                amount_cents=amount_cents,
            )
            session.add(refund)
            return refund.reference

    def ledger(self) -> ProviderLedger:
        """What the provider really moved: for reconciliation against our own books."""
        with Session(read_only(self.engine)) as session:
            captured = dict(
                session.exec(
                    select(SimulatedCharge.idempotency_key, SimulatedCharge.amount_cents).where(
                        SimulatedCharge.state == ProviderChargeState.CAPTURED
                    )
                ).all()
            )
            refunded = session.exec(
                select(func.coalesce(func.sum(SimulatedRefund.amount_cents), 0))
            ).one()
        return ProviderLedger(
            captured_cents=sum(captured.values()),
            refunded_cents=refunded,
            captured_by_key=captured,
        )
