"""OrderSaga: an order across customers, inventory, payment and shipping, each step undone in
reverse.

| step                         | service   | compensation                  |
|------------------------------|-----------|-------------------------------|
| create/check the customer    | customers | cancel the user (a guest's)   |
| reserve the stock            | inventory | release it                    |
| screen for fraud             | payment   | (reads only)                  |
| charge the payment           | payment   | refund it (void a hold)       |
| create the shipment          | shipping  | cancel it                     |
| commit the stock as sold     | inventory | (past the point of no return) |

``_place_order`` is that table. ``run`` holds what the platform asks of any saga: compensate
when a step fails or the order is cancelled, wait for the handlers, store the order's events,
end the execution as Temporal should show it. The mechanics live beside this module: running a
step (step_runner.py), retrying (retry_policies.py), the compensation stack (compensations.py),
stuck steps and compensations (stuck_steps.py, stuck_compensations.py), the order's events
(event_log.py) and what people decide meanwhile (decisions.py).
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ApplicationErrorCategory

with workflow.unsafe.imports_passed_through():
    from cloudmart.contracts import activities as act
    from cloudmart.contracts.events import EventType
    from cloudmart.contracts.failures import PaymentReviewTimedOut
    from cloudmart.contracts.orders import (
        AbortOrderUpdate,
        CancelUpdate,
        OrderSagaInput,
        OrderState,
        OrderStatus,
        ResolveCompensationUpdate,
        RetryStepUpdate,
        ReviewPaymentUpdate,
        StepStatus,
        UpdateAccepted,
    )
    from cloudmart.contracts.saga import WORKFLOW_TYPE
    from cloudmart.contracts.steps import (
        ChargePayment,
        ChargeResult,
        ChargeStatus,
        CheckFraud,
        CommitInventory,
        Compensate,
        CreateShipment,
        EnsureCustomer,
        ReserveInventory,
        ResolvePaymentReview,
    )

from workflows.cancellation import ForwardSteps, cancel_requested_in_temporal, uninterruptible
from workflows.compensations import Compensation, CompensationStack, record_undone
from workflows.decisions import Decisions
from workflows.event_log import EventLog
from workflows.order_state import OPERATOR, SYSTEM, OrderProgress, duration
from workflows.retry_policies import undo_retry
from workflows.step_runner import StepRunner, describe, failure_of
from workflows.stuck_compensations import StuckCompensations
from workflows.stuck_steps import StuckSteps

FRAUD_SCREEN = "fraud-check"
"""The fraud screen came after the saga was released: sagas that had passed that point on the
code before it replay (and finish) without it. The worked example of docs/versioning.md."""
CUSTOMER_STEP = "customer-step"
"""The customers step came after 1.0: sagas started on the code before it (every one of them is
past that point) replay and finish without it, as do sagas whose input names no customers
queue (started by an API from before it)."""

SAGA_ABORTS = (ActivityError, ApplicationError, asyncio.CancelledError)
"""What ends the forward steps early. Anything else is a bug: it fails the workflow task,
which Temporal retries until a fixed worker is deployed, instead of compensating."""


@workflow.defn(name=WORKFLOW_TYPE)
class OrderSaga:
    @workflow.init
    def __init__(self, order: OrderSagaInput) -> None:
        self._order = order
        self._progress = OrderProgress(order)
        self._state = self._progress.state
        self._events = EventLog(order.order_id, order.events_window)
        policy = order.stuck_policy
        self._steps = StepRunner(order.task_queues, self._progress, self._events, policy)
        self._stuck = StuckCompensations(self._steps, policy, self._progress, self._events)
        self._forward = ForwardSteps()
        self._decisions = Decisions(self._state, self._forward)
        self._steps.stuck = self._stuck_steps = StuckSteps(
            self._steps, policy, self._progress, self._events, self._decisions
        )

    @workflow.run
    async def run(self, order: OrderSagaInput) -> OrderState:
        self._progress.set_status(OrderStatus.PENDING)
        self._events.record(
            EventType.ORDER_PLACED,
            by=order.customer_id,
            customer_id=order.customer_id,
            items=[item.model_dump() for item in order.items],
            country=order.shipping_address.country,
        )
        undo = CompensationStack()
        try:
            await self._forward.run(
                self._place_order(order, undo), self._decisions.cancel_from_temporal
            )
            outcome = OrderStatus.COMPLETED
        except SAGA_ABORTS as abort:
            outcome = await uninterruptible(self._compensate(undo, abort))
        await workflow.wait_condition(workflow.all_handlers_finished)  # an operator's answer
        self._record_outcome(outcome)
        await uninterruptible(self._events.stored())
        self._progress.set_status(outcome)  # once its events are stored, for whoever sees it
        # How the execution ends, in Temporal's terms (the state query has the details):
        if self._state.failure is not None:
            raise ApplicationError(
                self._state.failure.message,
                type=self._state.failure.type,
                non_retryable=True,
                # A business outcome, not an incident: no warning logs or failure metrics.
                category=ApplicationErrorCategory.BENIGN,
            )
        if self._state.status is OrderStatus.CANCELLED and cancel_requested_in_temporal():
            raise asyncio.CancelledError("order cancelled")  # acknowledged: ends as Canceled
        return self._state

    async def _place_order(self, order: OrderSagaInput, undo: CompensationStack) -> None:
        """The saga. Each compensation is pushed before its step runs: a step can take effect
        even when its answer is lost (a timeout, a crash, a cancel)."""
        if order.task_queues.customers is not None and workflow.patched(CUSTOMER_STEP):
            await self._customer(order, undo)

        undo.push(act.RELEASE_INVENTORY)
        reservation = await self._steps.step(
            OrderStatus.RESERVING_INVENTORY,
            act.RESERVE_INVENTORY,
            ReserveInventory(order_id=order.order_id, items=order.items),
            summary=f"reserve {len(order.items)} line(s)",
            failed=EventType.INVENTORY_RESERVATION_FAILED,
        )
        self._state.total_cents = reservation.total_cents
        self._events.record(
            EventType.INVENTORY_RESERVED,
            by=SYSTEM,
            lines=[line.model_dump() for line in reservation.lines],
            total_cents=reservation.total_cents,
        )

        if workflow.patched(FRAUD_SCREEN):  # nothing to compensate: the screen only reads
            verdict = await self._steps.step(
                OrderStatus.CHARGING_PAYMENT,
                act.CHECK_FRAUD,
                CheckFraud(
                    order_id=order.order_id,
                    customer_id=order.customer_id,
                    payment_token=order.payment_token,
                    amount_cents=reservation.total_cents,
                    country=order.shipping_address.country,
                ),
                summary=f"fraud screen of {reservation.total_cents} cents",
                failed=EventType.FRAUD_CHECK_FAILED,
            )
            self._events.record(
                EventType.FRAUD_CHECK_PASSED,
                by=SYSTEM,
                score=verdict.score,
                reasons=verdict.reasons,
            )

        undo.push(act.REFUND_PAYMENT)
        charge = await self._steps.step(
            OrderStatus.CHARGING_PAYMENT,
            act.CHARGE_PAYMENT,
            ChargePayment(
                order_id=order.order_id,
                customer_id=order.customer_id,
                payment_token=order.payment_token,
                amount_cents=reservation.total_cents,
            ),
            summary=f"charge {reservation.total_cents} cents",
            failed=EventType.PAYMENT_DECLINED,
        )
        if charge.status is ChargeStatus.REVIEW_REQUIRED:
            self._events.record(
                EventType.PAYMENT_REVIEW_REQUESTED, by=SYSTEM, amount_cents=charge.amount_cents
            )
            charge = await self._payment_review(order)
        self._events.record(EventType.PAYMENT_CHARGED, by=SYSTEM, amount_cents=charge.amount_cents)

        undo.push(act.CANCEL_SHIPMENT)
        shipment = await self._steps.step(
            OrderStatus.CREATING_SHIPMENT,
            act.CREATE_SHIPMENT,
            CreateShipment(order_id=order.order_id, address=order.shipping_address),
            summary=f"ship to {order.shipping_address.country}",
            failed=EventType.SHIPMENT_FAILED,
        )
        self._state.tracking_number = shipment.tracking_number
        self._decisions.shipment_created = True  # the point of no return
        self._events.record(
            EventType.SHIPMENT_CREATED,
            by=SYSTEM,
            tracking_number=shipment.tracking_number,
            country=order.shipping_address.country,
        )

        sold = await self._steps.step(
            None,
            act.COMMIT_INVENTORY,
            CommitInventory(order_id=order.order_id),
            summary="commit the reservation as sold",
        )
        self._events.record(
            EventType.INVENTORY_COMMITTED,
            by=SYSTEM,
            lines=[line.model_dump() for line in sold.lines],
        )

    async def _customer(self, order: OrderSagaInput, undo: CompensationStack) -> None:
        """The lecture's User Service. A guest's account is opened now, and Cancel User closes
        it again if the order does not go through; a named customer's account must be open
        (the step only reads it and links the order: nothing to undo)."""
        if order.guest is not None:
            undo.push(act.CANCEL_USER)
        checked = await self._steps.step(
            None,
            act.ENSURE_CUSTOMER,
            EnsureCustomer(
                order_id=order.order_id, customer_id=order.customer_id, guest=order.guest
            ),
            summary="open a guest account" if order.guest else "check the customer's account",
            failed=EventType.CUSTOMER_CHECK_FAILED,
        )
        self._events.record(
            EventType.CUSTOMER_CHECKED,
            by=SYSTEM,
            customer_id=checked.customer_id,
            registered=checked.registered,
            created=checked.created,
        )

    async def _payment_review(self, order: OrderSagaInput) -> ChargeResult:
        """A held payment waits for an operator's decision, then is captured or voided."""
        self._progress.set_status(OrderStatus.AWAITING_PAYMENT_REVIEW)
        self._events.flush()  # the wait may be long: the read side shows the hold now
        record = self._progress.begin(self._state.steps, "payment.review")
        try:
            await workflow.wait_condition(
                lambda: self._decisions.review is not None,
                timeout=order.payment_review_timeout,
                timeout_summary="payment review deadline",
            )
        except TimeoutError:
            message = f"no payment review decision within {duration(order.payment_review_timeout)}"
            self._progress.end(record, StepStatus.FAILED, message)
            raise ApplicationError(
                message, type=PaymentReviewTimedOut.type_name(), non_retryable=True
            ) from None
        except asyncio.CancelledError:
            self._progress.end(record, StepStatus.CANCELLED)
            raise
        review = self._decisions.review
        assert review is not None
        approved = review.approved
        self._progress.end(record, StepStatus.COMPLETED, "approved" if approved else "rejected")
        self._events.record(EventType.PAYMENT_REVIEWED, by=review.by or OPERATOR, approved=approved)
        try:
            return await self._steps.step(
                OrderStatus.CHARGING_PAYMENT,
                act.RESOLVE_PAYMENT_REVIEW,
                ResolvePaymentReview(order_id=order.order_id, approved=approved),
                summary="capture after review" if approved else "void after review",
                failed=EventType.PAYMENT_DECLINED,
            )
        finally:
            self._decisions.review_applied = True

    async def _compensate(self, undo: CompensationStack, abort: BaseException) -> OrderStatus:
        """Undo what was done, in reverse; the outcome is CANCELLED or FAILED."""
        cancelled = self._state.cancel_reason is not None
        if cancelled:
            reason, cause = self._state.cancel_reason or "", "cancel"
        else:
            self._state.failure = failure_of(abort)
            reason, cause = describe(abort), self._state.failure.type
        self._progress.set_status(OrderStatus.COMPENSATING)
        self._events.record(EventType.COMPENSATION_STARTED, by=SYSTEM, reason=reason)
        for compensation in undo.in_undo_order():
            await self._undo(compensation, reason, summary=f"undo after {cause}")
        return OrderStatus.CANCELLED if cancelled else OrderStatus.FAILED

    async def _undo(self, compensation: Compensation, reason: str, *, summary: str) -> None:
        record = self._progress.begin(self._state.compensations, compensation.name)
        request = Compensate(order_id=self._order.order_id, reason=reason)
        policy = self._order.stuck_policy
        try:
            outcome = await self._steps.run(
                compensation,
                request,
                schedule_to_close_timeout=policy.after,  # past either limit: stuck
                retry_policy=undo_retry(policy),
                summary=summary,
            )
        except ActivityError as err:
            outcome = await self._stuck.until_unstuck(compensation, request, err)
        if isinstance(outcome, ResolveCompensationUpdate):
            self._progress.end(record, StepStatus.RESOLVED, outcome.note)
            self._events.record(
                EventType.COMPENSATION_RESOLVED,
                by=outcome.by or OPERATOR,
                step=outcome.step,
                note=outcome.note,
            )
            return
        detail = f"{outcome.outcome}: {outcome.detail}" if outcome.detail else str(outcome.outcome)
        self._progress.end(record, StepStatus.COMPLETED, detail)
        record_undone(self._events, compensation, outcome, self._order.customer_id)

    # --- what callers may ask of the saga ---------------------------------------------------

    @workflow.query
    def state(self) -> OrderState:
        return self._state

    @workflow.update
    def cancel(self, request: CancelUpdate) -> UpdateAccepted:
        self._decisions.cancel(request.reason, by=request.by or self._order.customer_id)
        return self._accepted()

    @cancel.validator
    def _validate_cancel(self, request: CancelUpdate) -> None:
        self._decisions.check_cancel()

    @workflow.update
    def review_payment(self, decision: ReviewPaymentUpdate) -> UpdateAccepted:
        self._decisions.review = decision
        return self._accepted()

    @review_payment.validator
    def _validate_review(self, decision: ReviewPaymentUpdate) -> None:
        self._decisions.check_review()

    @workflow.update
    def retry_compensation(self) -> UpdateAccepted:
        """Operator: retry the stuck compensation now instead of at its next backoff."""
        self._stuck.retry_now = True
        return self._accepted()

    @retry_compensation.validator
    def _validate_retry(self) -> None:
        self._stuck.check_stuck()

    @workflow.update
    async def resolve_compensation(self, resolution: ResolveCompensationUpdate) -> UpdateAccepted:
        """Operator: the stuck compensation was done by hand; record it and go on."""
        await self._stuck.resolve(resolution)
        return self._accepted()

    @resolve_compensation.validator
    def _validate_resolution(self, resolution: ResolveCompensationUpdate) -> None:
        self._stuck.check_resolution(resolution)

    @workflow.update
    def retry_step(self, request: RetryStepUpdate) -> UpdateAccepted:
        """Operator: retry the stuck step now instead of at its next backoff."""
        self._stuck_steps.retry = request
        return self._accepted()

    @retry_step.validator
    def _validate_retry_step(self, request: RetryStepUpdate) -> None:
        self._stuck_steps.check_retry()

    @workflow.update
    def abort(self, request: AbortOrderUpdate) -> UpdateAccepted:
        """Operator: give up on the stuck step; the order fails and what was done is undone."""
        self._decisions.abort = request
        return self._accepted()

    @abort.validator
    def _validate_abort(self, request: AbortOrderUpdate) -> None:
        self._decisions.check_abort()

    def _accepted(self) -> UpdateAccepted:
        return UpdateAccepted(order_id=self._order.order_id, status=self._state.status)

    def _record_outcome(self, outcome: OrderStatus) -> None:
        state, record = self._state, self._events.record
        if outcome is OrderStatus.COMPLETED:
            record(EventType.ORDER_COMPLETED, by=SYSTEM, total_cents=state.total_cents)
        elif state.failure is not None:
            record(EventType.ORDER_FAILED, by=SYSTEM, **state.failure.model_dump())
        else:
            record(
                EventType.ORDER_CANCELLED,
                by=self._decisions.cancelled_by,
                reason=state.cancel_reason,
            )
