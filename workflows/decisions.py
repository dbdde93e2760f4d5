"""What people decide while the saga runs: a cancel (the customer's, or Temporal's), an
operator's payment review decision and an operator's abort of an order whose step is stuck, and
whether each can still be accepted.

The saga's update validators ask here, and its handlers record the decision here; the saga
reads it back (``review``, ``cancelled_by``). Of a cancel and a review decision, the first one
accepted is the one applied (docs/saga.md, "Decisions that race").
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from cloudmart.contracts.orders import (
        AbortOrderUpdate,
        OrderState,
        OrderStatus,
        ReviewPaymentUpdate,
    )

from workflows.cancellation import ForwardSteps
from workflows.order_state import OPERATOR, SYSTEM, refuse


class Decisions:
    def __init__(self, state: OrderState, forward: ForwardSteps) -> None:
        self._state = state
        self._forward = forward
        self.review: ReviewPaymentUpdate | None = None
        self.review_applied = False
        """Until then, an accepted review decision wins over a cancel."""
        self.shipment_created = False
        """The point of no return: cancels are refused from here."""
        self.cancelled_by = SYSTEM
        self.abort: AbortOrderUpdate | None = None
        """An operator's abort, accepted while a step was stuck (stuck_steps.py applies it)."""

    def check_cancel(self) -> None:
        """The ``cancel`` update's validator."""
        if self._state.cancel_reason is not None and (
            self._state.status is OrderStatus.CANCELLED or not self._state.status.is_terminal
        ):
            return  # being or already cancelled: accepted again, idempotently
        refusal = self._cancel_refusal()
        if refusal is not None:
            refuse(refusal, "CancelRefused")

    def check_review(self) -> None:
        """The ``review_payment`` update's validator."""
        status = self._state.status
        if status.is_terminal:
            refuse(f"order is already {status}", "NotAwaitingReview")
        if self.review is not None:  # the first decision accepted is the one applied
            refuse(f"the payment review was already {self._verdict()}", "AlreadyReviewed")
        if self._state.cancel_reason is not None:
            refuse("order was cancelled before the decision", "NotAwaitingReview")
        if status is not OrderStatus.AWAITING_PAYMENT_REVIEW:
            refuse(f"order is {status}, not awaiting a payment review", "NotAwaitingReview")

    def check_abort(self) -> None:
        """The ``abort`` update's validator: an order whose step is stuck, before the point of
        no return, once."""
        state = self._state
        if self.abort is not None:
            refuse("an operator already aborted the order; it is being compensated", "NotStuck")
        if state.stuck_step is None:
            refuse(f"order is {state.status}, no step is stuck", "NotStuck")
        if state.cancel_reason is not None:
            refuse("order was cancelled; it is being compensated", "NotStuck")
        if self.shipment_created:
            refuse(
                f"shipment {state.tracking_number} is already created; too late to abort "
                f"({state.stuck_step.step} is retried until it succeeds)",
                "AbortRefused",
            )

    def cancel(self, reason: str, by: str) -> None:
        if self._state.cancel_reason is not None:
            return  # cancelled already: the first reason stands
        self._state.cancel_reason = reason
        self.cancelled_by = by
        self._forward.cancel()

    def cancel_from_temporal(self) -> None:
        refusal = self._cancel_refusal()
        if refusal is None:
            self.cancel("cancel requested through Temporal", by=OPERATOR)
        else:
            workflow.logger.warning("Cancel request ignored: %s", refusal)

    def _cancel_refusal(self) -> str | None:
        status = self._state.status
        if status.is_terminal:
            return f"order is already {status}"
        if status in (OrderStatus.COMPENSATING, OrderStatus.COMPENSATION_STUCK):
            return "order failed and is being compensated"
        if self.abort is not None:
            return "an operator aborted the order; it is being compensated"
        if self.shipment_created:
            return f"shipment {self._state.tracking_number} is already created; too late to cancel"
        if self.review is not None and not self.review_applied:
            return f"the payment review was just {self._verdict()}; that decision is being applied"
        return None

    def _verdict(self) -> str:
        return "approved" if self.review is not None and self.review.approved else "rejected"
