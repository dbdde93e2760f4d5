"""Fraud screening before the charge: a risk score from a screening provider, and the verdict
kept per order.

The screen is outside the system (a card network's or a vendor's risk service), so like the
payment provider it sits behind one interface and is simulated. Like a vendor's test mode, its
answer is chosen by the request:

- the token ``tok_fraud``: a card reported stolen, score 95;
- an order above 5,000.00: unusual for the shop, score +50;
- anything else: score 0.

An order scoring ``REFUSE_AT`` or more is refused before any money moves.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import Engine
from sqlmodel import Session

from cloudmart.contracts.failures import FraudSuspected
from cloudmart.contracts.steps import CheckFraud, FraudAssessment
from services.database import get_for_update, insert_if_absent, read_only, transaction
from services.payment.models import FraudCheck

REFUSE_AT = 80
LARGE_ORDER_CENTS = 500_000


class FraudScreen(Protocol):
    def assess(self, request: CheckFraud) -> FraudAssessment:
        """Score the order's risk; may raise a transient error (retried)."""


class SimulatedFraudScreen:
    def assess(self, request: CheckFraud) -> FraudAssessment:
        score, reasons = 0, []
        if request.payment_token == "tok_fraud":
            score, reasons = 95, ["card reported stolen"]
        if request.amount_cents > LARGE_ORDER_CENTS:
            score, reasons = score + 50, [*reasons, "unusually large order"]
        return FraudAssessment(order_id=request.order_id, score=min(score, 100), reasons=reasons)


class FraudChecks:
    """Payment's record of the screen's verdicts: one per order, first answer stands."""

    def __init__(self, engine: Engine, screen: FraudScreen) -> None:
        self.engine = engine
        self.screen = screen

    def check(self, request: CheckFraud) -> FraudAssessment:
        """The order's verdict; raises ``FraudSuspected`` if it is refused."""
        with Session(read_only(self.engine), expire_on_commit=False) as session:
            known = session.get(FraudCheck, request.order_id)
        if known is None:
            # The screen is called outside any transaction; a concurrent attempt may record
            # its own verdict first, and then that one stands.
            fresh = self.screen.assess(request)
            with transaction(self.engine) as session:
                row = {
                    "order_id": request.order_id,
                    "score": fresh.score,
                    "passed": fresh.score < REFUSE_AT,
                    "reasons": "; ".join(fresh.reasons)[:500],
                }
                insert_if_absent(session, FraudCheck, [row])
                known = get_for_update(session, FraudCheck, request.order_id)
                assert known is not None
        verdict = FraudAssessment(
            order_id=known.order_id,
            score=known.score,
            reasons=known.reasons.split("; ") if known.reasons else [],
        )
        if not known.passed:
            raise FraudSuspected(
                f"order refused by the fraud screen (score {known.score}: "
                f"{', '.join(verdict.reasons)})"
            )
        return verdict
