"""OrderSaga: reserve inventory, charge payment, create the shipment, commit the sale.

Each step's compensation is pushed before the step runs; when a step fails for a business reason
or the order is cancelled, the compensations run in reverse order and cannot be interrupted.
Once the shipment exists the order is past the point of no return and always completes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ApplicationErrorCategory,
    RetryState,
    is_cancelled_exception,
)
from temporalio.exceptions import TimeoutError as TemporalTimeoutError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from cloudmart.contracts import activities as act
    from cloudmart.contracts.activities import ActivitySpec
    from cloudmart.contracts.events import EventType
    from cloudmart.contracts.failures import PaymentReviewTimedOut
    from cloudmart.contracts.orders import (
        CancelOrder,
        Failure,
        OrderSagaInput,
        OrderState,
        OrderStatus,
        PaymentReviewDecision,
        ResolveCompensation,
        StepRecord,
        StepStatus,
        StuckCompensation,
        UpdateAccepted,
    )
    from cloudmart.contracts.saga import CUSTOMER_ID, ORDER_STATUS, WORKFLOW_TYPE
    from cloudmart.contracts.steps import (
        ChargePayment,
        ChargeStatus,
        CheckFraud,
        CommitInventory,
        Compensate,
        CompensationResult,
        CreateShipment,
        ReserveInventory,
        ResolvePaymentReview,
    )

from workflows.compensations import Compensation, CompensationStack, uninterruptible
from workflows.event_log import EventLog

ResultT = TypeVar("ResultT", bound=BaseModel)

STEP_TIMEOUT = timedelta(seconds=10)
"""Each step is one short transaction (plus a provider call): a worker that dies mid-step is
noticed within this time and the step is retried on another worker."""

STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
"""No attempt limit: only a typed business failure (raised non-retryable) fails a step."""

UNDO_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
)
"""Compensations retry until they succeed; past the saga's StuckPolicy, in rounds that an
operator can see and act on."""

UNDO_EVENTS = {
    act.RELEASE_INVENTORY.name: EventType.INVENTORY_RELEASED,
    act.REFUND_PAYMENT.name: EventType.PAYMENT_REFUNDED,
    act.CANCEL_SHIPMENT.name: EventType.SHIPMENT_CANCELLED,
}

ORDER_EVENTS = "order-events"
"""The patch that added the order event log: sagas started before it replay without it."""
FRAUD_CHECK = "fraud-check"
"""Saga v2: the fraud screen before the charge. Sagas that had passed that point when the
worker was upgraded replay (and finish) without it."""

STUCK_ROUND_ATTEMPTS = 10
"""Once stuck, a compensation is retried in rounds of this many attempts, backing off from a
minute to the policy's cap; each failed round refreshes the error an operator sees. Rounds keep
the history small: a round (about 37 minutes at the default 5-minute cap) costs about six
events, not six per attempt."""
STUCK_FIRST_BACKOFF = timedelta(minutes=1)

LEAN_HISTORY = "lean-history"
"""Saga v3, a shorter history for the same order: the event log batches its appends within the
input's ``events_window`` (one append for an order that ends within it, instead of about
seven); the OrderStatus search attribute changes only for statuses that last (a review hold,
compensating, stuck, the end), not for each step's few milliseconds; and the terminal status is
set only once the order's events are stored, so that whoever sees it can read them."""
EVENT_WINDOWS = "event-windows"
"""Saga v4, the same history as v3 for an order that ends within its window, made robust: the
event log's timed windows choose by workflow time alone (workflows/event_log.py), where v3's
choices could differ on a replay that saw a timer fire together with a later update."""
TIMER_WINDOWS = "timer-windows"
"""Saga v5, the same history as v4: the event log's windows are closed by their timers alone,
never by the clock, which a replay can see differ from the worker that first ran a workflow
task (workflows/event_log.py)."""
LOCAL_APPENDS = "local-appends"
"""Saga v6, in the local step mode only: the event appends are local activities too, so that an
order that ends within its window is one workflow task (measured: README, "Performance"); a
regular-mode saga never asks for this patch, and its history is v5's."""
SAGA_V7 = "saga-v7"
"""Saga v7, the same commands as v6 under one patch: a saga that takes it takes every patch
before it without asking for them. Temporal records a marker for each patch a saga takes, and
updates the saga's ``TemporalChangeVersion`` search attribute with it (an event more, and a
visibility write); a new saga now pays that once instead of five times. Sagas started before it
replay through the older patches, as they did."""
SAGA_V8 = "saga-v8"
"""Saga v8, v7 with its event windows closed by the saga instead of by timers: before a wait for
a person, and when a step (or a compensation) has run for a window without ending, whose first
round the window bounds (``_run``). A window's timer was a second source of commands beside the
steps, and their order could differ between a worker that ran a query in the middle of a
workflow task and a replay of that task (workflows/event_log.py). One patch marker, as v7; v7
and older sagas keep their timers."""
LASTING = frozenset(
    {
        OrderStatus.AWAITING_PAYMENT_REVIEW,
        OrderStatus.COMPENSATING,
        OrderStatus.COMPENSATION_STUCK,
        OrderStatus.COMPLETED,
        OrderStatus.FAILED,
        OrderStatus.CANCELLED,
    }
)
"""The statuses worth a search attribute update (a history event, a visibility write) in v3."""

SYSTEM, OPERATOR = "system", "operator"
"""Who caused an event, besides the customer: the saga itself, or an operator (a payment
review, a cancel through Temporal)."""

SAGA_ABORTS = (ActivityError, ApplicationError, asyncio.CancelledError)
"""What ends the forward steps early. Anything else is a bug: it fails the workflow task,
which Temporal retries until a fixed worker is deployed, instead of compensating."""


@workflow.defn(name=WORKFLOW_TYPE)
class OrderSaga:
    @workflow.init
    def __init__(self, order: OrderSagaInput) -> None:
        now = workflow.now()
        self._order = order
        self._state = OrderState(
            order_id=order.order_id,
            customer_id=order.customer_id,
            status=OrderStatus.PENDING,
            items=order.items,
            created_at=now,
            updated_at=now,
        )
        self._steps: asyncio.Task[None] | None = None
        self._shipment_created = False
        self._review: PaymentReviewDecision | None = None
        self._cancelled_by = SYSTEM
        self._events = EventLog(order.order_id)
        self._retry_now = False
        self._resolution: ResolveCompensation | None = None
        self._resolved = False
        self._lean = False
        self._v7 = False
        self._v8 = False

    @workflow.run
    async def run(self, order: OrderSagaInput) -> OrderState:
        self._v8 = workflow.patched(SAGA_V8)
        self._v7 = self._v8 or workflow.patched(SAGA_V7)
        self._lean = self._v7 or workflow.patched(LEAN_HISTORY)
        self._set_status(OrderStatus.PENDING)
        self._events.enabled = self._v7 or workflow.patched(ORDER_EVENTS)
        if self._lean:
            self._events.window = order.events_window
            if self._v7 or workflow.patched(TIMER_WINDOWS):
                self._events.timer_windows = True
                self._events.closed_by_saga = self._v8
            else:
                self._events.timed = workflow.patched(EVENT_WINDOWS)
        self._events.record(
            EventType.ORDER_PLACED,
            by=order.customer_id,
            customer_id=order.customer_id,
            items=[item.model_dump() for item in order.items],
            country=order.shipping_address.country,
        )
        undo = CompensationStack()
        try:
            await self._run_until_done_or_cancelled(self._place_order(order, undo))
            outcome = self._known(OrderStatus.COMPLETED)
        except SAGA_ABORTS as abort:
            outcome = await uninterruptible(self._compensate(undo, abort))
        await workflow.wait_condition(workflow.all_handlers_finished)  # an operator's answer
        self._record_outcome(outcome)
        await uninterruptible(self._events.stored())
        if self._lean:
            self._set_status(outcome)
        # How the execution ends, in Temporal's terms (the state query has the details):
        if self._state.failure is not None:
            raise ApplicationError(
                self._state.failure.message,
                type=self._state.failure.type,
                non_retryable=True,
                # A business outcome, not an incident: no warning logs or failure metrics.
                category=ApplicationErrorCategory.BENIGN,
            )
        if self._state.status is OrderStatus.CANCELLED and _cancel_requested_in_temporal():
            raise asyncio.CancelledError("order cancelled")  # acknowledged: ends as Canceled
        return self._state

    async def _place_order(self, order: OrderSagaInput, undo: CompensationStack) -> None:
        undo.push(act.RELEASE_INVENTORY)
        reservation = await self._step(
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

        screened = self._v7 or workflow.patched(FRAUD_CHECK)
        if screened:
            await self._check_fraud(order, reservation.total_cents)

        undo.push(act.REFUND_PAYMENT)
        charge = await self._step(
            None if screened else OrderStatus.CHARGING_PAYMENT,  # set by the screen already
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
            await self._payment_review(order)
        else:
            self._events.record(
                EventType.PAYMENT_CHARGED, by=SYSTEM, amount_cents=charge.amount_cents
            )

        undo.push(act.CANCEL_SHIPMENT)
        shipment = await self._step(
            OrderStatus.CREATING_SHIPMENT,
            act.CREATE_SHIPMENT,
            CreateShipment(order_id=order.order_id, address=order.shipping_address),
            summary=f"ship to {order.shipping_address.country}",
            failed=EventType.SHIPMENT_FAILED,
        )
        self._state.tracking_number = shipment.tracking_number
        self._shipment_created = True  # the point of no return: cancels are refused from here
        self._events.record(
            EventType.SHIPMENT_CREATED,
            by=SYSTEM,
            tracking_number=shipment.tracking_number,
            country=order.shipping_address.country,
        )

        sold = await self._step(
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

    async def _check_fraud(self, order: OrderSagaInput, amount_cents: int) -> None:
        """Nothing to compensate: the screen only reads, and its verdict is kept per order."""
        verdict = await self._step(
            OrderStatus.CHARGING_PAYMENT,
            act.CHECK_FRAUD,
            CheckFraud(
                order_id=order.order_id,
                customer_id=order.customer_id,
                payment_token=order.payment_token,
                amount_cents=amount_cents,
                country=order.shipping_address.country,
            ),
            summary=f"fraud screen of {amount_cents} cents",
            failed=EventType.FRAUD_CHECK_FAILED,
        )
        self._events.record(
            EventType.FRAUD_CHECK_PASSED, by=SYSTEM, score=verdict.score, reasons=verdict.reasons
        )

    async def _payment_review(self, order: OrderSagaInput) -> None:
        self._set_status(OrderStatus.AWAITING_PAYMENT_REVIEW)
        self._events.flush()  # v8: the wait may be long; the read side shows the hold now
        record = self._begin(self._state.steps, "payment.review")
        try:
            await workflow.wait_condition(
                lambda: self._review is not None,
                timeout=order.payment_review_timeout,
                timeout_summary="payment review deadline",
            )
        except TimeoutError:
            message = f"no payment review decision within {_duration(order.payment_review_timeout)}"
            self._end(record, StepStatus.FAILED, message)
            raise ApplicationError(
                message, type=PaymentReviewTimedOut.type_name(), non_retryable=True
            ) from None
        except asyncio.CancelledError:
            self._end(record, StepStatus.CANCELLED)
            raise
        assert self._review is not None
        approved = self._review.approved
        self._end(record, StepStatus.COMPLETED, "approved" if approved else "rejected")
        self._events.record(EventType.PAYMENT_REVIEWED, by=OPERATOR, approved=approved)
        charge = await self._step(
            OrderStatus.CHARGING_PAYMENT,
            act.RESOLVE_PAYMENT_REVIEW,
            ResolvePaymentReview(order_id=order.order_id, approved=approved),
            summary="capture after review" if approved else "void after review",
            failed=EventType.PAYMENT_DECLINED,
        )
        self._events.record(EventType.PAYMENT_CHARGED, by=SYSTEM, amount_cents=charge.amount_cents)

    async def _compensate(self, undo: CompensationStack, abort: BaseException) -> OrderStatus:
        """Undo what was done, in reverse; the outcome is CANCELLED or FAILED."""
        cancelled = self._state.cancel_reason is not None
        if self._state.cancel_reason is not None:
            reason, cause = self._state.cancel_reason, "cancel"
        else:
            failure = _failure_of(abort)
            self._state.failure = failure
            reason, cause = f"{failure.type}: {failure.message}", failure.type
        self._set_status(OrderStatus.COMPENSATING)
        self._events.record(EventType.COMPENSATION_STARTED, by=SYSTEM, reason=reason)
        for compensation in undo.in_undo_order():
            await self._undo(compensation, reason, summary=f"undo after {cause}")
        return self._known(OrderStatus.CANCELLED if cancelled else OrderStatus.FAILED)

    async def _undo(self, compensation: Compensation, reason: str, *, summary: str) -> None:
        record = self._begin(self._state.compensations, compensation.name)
        request = Compensate(order_id=self._order.order_id, reason=reason)
        policy = self._order.stuck_policy
        try:
            result = await self._run(
                compensation,
                request,
                # Past either limit it is reported stuck (and retried on, see _until_unstuck).
                schedule_to_close_timeout=policy.after,
                retry_policy=replace(UNDO_RETRY, maximum_attempts=policy.attempts),
                summary=summary,
            )
        except ActivityError as err:
            if err.retry_state is RetryState.NON_RETRYABLE_FAILURE:
                # Its service says it can never succeed; the remaining compensations still run.
                self._end(record, StepStatus.FAILED, _describe(err))
                workflow.logger.error("Compensation %s failed: %s", record.name, _describe(err))
                return
            result = await self._until_unstuck(compensation, request, record, err)
            if result is None:
                return  # resolved by hand, or given up by its service
        detail = f"{result.outcome}: {result.detail}" if result.detail else str(result.outcome)
        self._end(record, StepStatus.COMPLETED, detail)
        self._events.record(
            UNDO_EVENTS[compensation.name],
            by=SYSTEM,
            outcome=result.outcome,
            lines=[line.model_dump() for line in result.lines],
            amount_cents=result.amount_cents,
        )

    async def _until_unstuck(
        self,
        compensation: Compensation,
        request: Compensate,
        record: StepRecord,
        failure: ActivityError,
    ) -> CompensationResult | None:
        """The dead-letter path: report the compensation stuck, keep retrying it in rounds with
        a capped backoff, and let an operator retry it now or resolve it by hand."""
        self._state.stuck = StuckCompensation(
            step=compensation.name, since=workflow.now(), last_error=_last_error(failure)
        )
        self._set_status(OrderStatus.COMPENSATION_STUCK)
        self._events.record(
            EventType.COMPENSATION_STUCK,
            by=SYSTEM,
            step=compensation.name,
            error=self._state.stuck.last_error,
        )
        self._events.flush()  # v8: an operator is needed; the read side shows it now
        workflow.logger.error(
            "Compensation %s is stuck: %s", compensation.name, self._state.stuck.last_error
        )
        cap = self._order.stuck_policy.retry_cap
        try:
            while True:
                self._retry_now = False
                round_ = self._start(
                    compensation,
                    request,
                    retry_policy=replace(
                        UNDO_RETRY,
                        initial_interval=min(STUCK_FIRST_BACKOFF, cap),
                        maximum_interval=cap,
                        maximum_attempts=STUCK_ROUND_ATTEMPTS,
                    ),
                    # A round stopped for an operator ends only once its attempt has: nothing
                    # of it runs on behind the operator's back.
                    cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                    summary="retry of a stuck compensation",
                )
                await workflow.wait_condition(
                    lambda round_=round_: (
                        round_.done() or self._retry_now or self._resolution is not None
                    )
                )
                if not round_.done():
                    round_.cancel()
                try:
                    result = await round_
                except (ActivityError, asyncio.CancelledError) as err:
                    if not is_cancelled_exception(err):
                        assert isinstance(err, ActivityError)
                        if err.retry_state is RetryState.NON_RETRYABLE_FAILURE:
                            # Its service now says it can never succeed: as in _undo.
                            self._end(record, StepStatus.FAILED, _describe(err))
                            workflow.logger.error(
                                "Compensation %s failed: %s", record.name, _describe(err)
                            )
                            return None
                        self._state.stuck.rounds += 1
                        self._state.stuck.last_error = _last_error(err)
                else:
                    return result  # an operator's resolution arriving meanwhile is refused
                if self._resolution is not None:
                    self._resolve_by_hand(record, self._resolution)
                    self._resolved = True
                    return None
        finally:
            self._state.stuck = None
            self._resolution = None
            self._set_status(OrderStatus.COMPENSATING)

    def _resolve_by_hand(self, record: StepRecord, resolution: ResolveCompensation) -> None:
        self._end(record, StepStatus.RESOLVED, resolution.note)
        self._events.record(
            EventType.COMPENSATION_RESOLVED,
            by=OPERATOR,
            step=resolution.step,
            note=resolution.note,
        )

    async def _step(
        self,
        status: OrderStatus | None,
        spec: ActivitySpec[Any, ResultT],
        request: BaseModel,
        *,
        summary: str,
        failed: EventType | None = None,
    ) -> ResultT:
        if status is not None:
            self._set_status(status)
        record = self._begin(self._state.steps, spec.name)
        try:
            result = await self._run(spec, request, retry_policy=STEP_RETRY, summary=summary)
        except (ActivityError, asyncio.CancelledError) as err:
            interrupted = self._state.cancel_reason is not None
            self._end(
                record,
                StepStatus.CANCELLED if interrupted else StepStatus.FAILED,
                None if interrupted else _describe(err),
            )
            if failed is not None and not interrupted:
                failure = _failure_of(err)
                self._events.record(failed, by=SYSTEM, type=failure.type, message=failure.message)
            raise
        self._end(record, StepStatus.COMPLETED)
        return result

    async def _run(
        self, spec: ActivitySpec[Any, ResultT], request: BaseModel, **options: Any
    ) -> ResultT:
        """Run a step or a compensation to its result.

        In saga v8, while recorded events wait to be stored, its first attempt is a round of
        its own, bounded by the events window: if that attempt fails, or has not ended within
        the window (a service down, a slow provider), the saga stores what it has, then goes on
        with the rest of the retry policy and limits. Steps are idempotent, so an attempt that
        the bound cut short and that finished anyway is harmless; a typed business failure, or
        a cancel, ends it as it would have."""
        window = self._events.window
        policy: RetryPolicy = options["retry_policy"]
        limit: timedelta | None = options.get("schedule_to_close_timeout")
        if (
            not self._v8
            or window is None
            or not self._events.waiting
            or policy.maximum_attempts == 1
            or (limit is not None and limit <= window)
        ):
            return await self._start(spec, request, **options)
        first = {
            **options,
            "retry_policy": replace(policy, maximum_attempts=1),
            "schedule_to_close_timeout": window,
        }
        try:
            return await self._start(spec, request, **first)
        except ActivityError as err:
            # (A cancelled order's compensations run on: only their own cancellation ends them.)
            if err.retry_state is RetryState.NON_RETRYABLE_FAILURE or is_cancelled_exception(err):
                raise
        self._events.flush()
        rest = {**options}
        if policy.maximum_attempts > 1:
            rest["retry_policy"] = replace(policy, maximum_attempts=policy.maximum_attempts - 1)
        if limit is not None:
            rest["schedule_to_close_timeout"] = limit - window
        return await self._start(spec, request, **rest)

    def _start(
        self, spec: ActivitySpec[Any, ResultT], request: BaseModel, **options: Any
    ) -> workflow.ActivityHandle[ResultT]:
        """Start a step or a compensation: an activity on its service's task queue."""
        return workflow.start_activity(
            spec.name,
            request,
            result_type=spec.result_type,
            task_queue=self._order.task_queues.for_service(spec.service),
            start_to_close_timeout=STEP_TIMEOUT,
            **options,
        )

    async def _run_until_done_or_cancelled(self, steps: Coroutine[Any, Any, None]) -> None:
        """Run the forward steps as a task that a cancel request can stop.

        Both kinds of cancel arrive here: the customer's ``cancel`` update cancels the task
        directly; Temporal's request (Web UI, CLI, ``handle.cancel()``) cancels this coroutine,
        and is turned into the same cancel unless the order is past the point of no return.
        """
        if self._state.cancel_reason is not None:  # cancelled before the first step
            steps.close()
            raise asyncio.CancelledError
        self._steps = asyncio.create_task(steps)
        while True:
            try:
                return await asyncio.shield(self._steps)
            except asyncio.CancelledError:
                if self._steps.done():
                    # Cancelled (by the customer) or failed: raises. Finished: the order is
                    # complete, and a cancel request arriving just now cannot undo it.
                    return self._steps.result()
                refusal = self._cancel_refusal()
                if refusal is None:
                    self._cancel("cancel requested through Temporal", by=OPERATOR)
                else:
                    workflow.logger.warning("Cancel request ignored: %s", refusal)

    @workflow.query
    def state(self) -> OrderState:
        return self._state

    @workflow.update
    def cancel(self, request: CancelOrder) -> UpdateAccepted:
        self._cancel(request.reason, by=self._order.customer_id)
        return UpdateAccepted(order_id=self._order.order_id, status=self._state.status)

    @cancel.validator
    def _validate_cancel(self, request: CancelOrder) -> None:
        if self._state.cancel_reason is not None and (
            self._state.status is OrderStatus.CANCELLED or not self._state.status.is_terminal
        ):
            return  # being or already cancelled: accepted again, idempotently
        refusal = self._cancel_refusal()
        if refusal is not None:
            raise ApplicationError(refusal, type="CancelRefused", non_retryable=True)

    @workflow.update
    def review_payment(self, decision: PaymentReviewDecision) -> UpdateAccepted:
        self._review = decision
        return UpdateAccepted(order_id=self._order.order_id, status=self._state.status)

    @review_payment.validator
    def _validate_review(self, decision: PaymentReviewDecision) -> None:
        status = self._state.status
        if status.is_terminal:  # its last events may still be being stored
            raise ApplicationError(
                f"order is already {status}", type="NotAwaitingReview", non_retryable=True
            )
        if status is not OrderStatus.AWAITING_PAYMENT_REVIEW or self._review:
            raise ApplicationError(
                f"order is {status}, not awaiting a payment review",
                type="NotAwaitingReview",
                non_retryable=True,
            )

    @workflow.update
    def retry_compensation(self) -> UpdateAccepted:
        """Operator: retry the stuck compensation now instead of at its next backoff."""
        self._retry_now = True
        return UpdateAccepted(order_id=self._order.order_id, status=self._state.status)

    @retry_compensation.validator
    def _validate_retry(self) -> None:
        self._require_stuck()

    @workflow.update
    async def resolve_compensation(self, resolution: ResolveCompensation) -> UpdateAccepted:
        """Operator: the stuck compensation was done by hand; record it and go on."""
        self._resolution, self._resolved = resolution, False
        await workflow.wait_condition(lambda: self._resolution is None)
        if not self._resolved:
            raise ApplicationError(
                f"{resolution.step} ended before the resolution was applied (it succeeded, or "
                "its service refused it for good: see the order's compensations); nothing was "
                "marked as done by hand",
                type="CompensationSucceeded",
                non_retryable=True,
            )
        return UpdateAccepted(order_id=self._order.order_id, status=self._state.status)

    @resolve_compensation.validator
    def _validate_resolution(self, resolution: ResolveCompensation) -> None:
        stuck = self._require_stuck()
        if resolution.step != stuck.step:
            raise ApplicationError(
                f"the stuck compensation is {stuck.step}, not {resolution.step}",
                type="NotStuck",
                non_retryable=True,
            )
        if self._resolution is not None:
            raise ApplicationError(
                f"{stuck.step} is already being resolved", type="NotStuck", non_retryable=True
            )

    def _require_stuck(self) -> StuckCompensation:
        if self._state.stuck is None:
            raise ApplicationError(
                f"order is {self._state.status}, no compensation is stuck",
                type="NotStuck",
                non_retryable=True,
            )
        return self._state.stuck

    def _cancel_refusal(self) -> str | None:
        status = self._state.status
        if status.is_terminal:
            return f"order is already {status}"
        if status in (OrderStatus.COMPENSATING, OrderStatus.COMPENSATION_STUCK):
            return "order failed and is being compensated"
        if self._shipment_created:
            return f"shipment {self._state.tracking_number} is already created; too late to cancel"
        return None

    def _cancel(self, reason: str, by: str) -> None:
        if self._state.cancel_reason is not None:
            return  # cancelled already: the first reason stands
        self._state.cancel_reason = reason
        self._cancelled_by = by
        if self._steps is not None:
            self._steps.cancel()

    def _known(self, outcome: OrderStatus) -> OrderStatus:
        """The saga's outcome is known. Before v3 it became the status there and then, before
        the order's last events were stored; v3 sets it once they are."""
        if not self._lean:
            self._set_status(outcome)
        return outcome

    def _record_outcome(self, outcome: OrderStatus) -> None:
        state = self._state
        if outcome is OrderStatus.COMPLETED:
            self._events.record(EventType.ORDER_COMPLETED, by=SYSTEM, total_cents=state.total_cents)
        elif state.failure is not None:
            self._events.record(
                EventType.ORDER_FAILED,
                by=SYSTEM,
                type=state.failure.type,
                message=state.failure.message,
            )
        else:
            self._events.record(
                EventType.ORDER_CANCELLED, by=self._cancelled_by, reason=state.cancel_reason
            )

    def _set_status(self, status: OrderStatus) -> None:
        self._state.status = status
        self._state.updated_at = workflow.now()
        if self._lean and status not in LASTING and not self._search_attributes_missing():
            return
        # No amount among them: search attributes are stored in clear, out of the codec's reach
        # (sagas started before this still carry an OrderTotal; the read side has the totals).
        workflow.upsert_search_attributes(
            [
                ORDER_STATUS.value_set(status.value),
                CUSTOMER_ID.value_set(self._order.customer_id),
            ]
        )
        workflow.logger.info("Order %s is %s", self._order.order_id, status)

    def _begin(self, records: list[StepRecord], name: str) -> StepRecord:
        record = StepRecord(name=name, status=StepStatus.RUNNING, at=workflow.now())
        records.append(record)
        return record

    def _end(self, record: StepRecord, status: StepStatus, detail: str | None = None) -> None:
        record.status = status
        record.at = workflow.now()
        record.detail = detail
        self._state.updated_at = record.at

    def _search_attributes_missing(self) -> bool:
        """Whether the saga was started without its search attributes (the API sets them; a
        plain client may not), so that its first status must set them."""
        found = workflow.info().typed_search_attributes
        return found.get(CUSTOMER_ID) is None or found.get(ORDER_STATUS) is None


def _cancel_requested_in_temporal() -> bool:
    """Whether Temporal asked to cancel this workflow at any point (Web UI, CLI, client).

    Temporal's request cancels the workflow's main task; a customer's cancel only cancels the
    steps. The main task keeps count of its cancel requests even when they are absorbed (while
    compensating, or past the point of no return)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _failure_of(abort: BaseException) -> Failure:
    cause = abort.cause if isinstance(abort, ActivityError) and abort.cause else abort
    if isinstance(cause, ApplicationError):
        return Failure(type=cause.type or "ApplicationError", message=cause.message)
    return Failure(type=type(cause).__name__, message=str(cause))


def _describe(err: BaseException) -> str:
    failure = _failure_of(err)
    return f"{failure.type}: {failure.message}"


def _last_error(err: ActivityError) -> str:
    """What the last attempt failed with, also when the limit that ended the retries was a
    timeout (its cause is the last attempt's failure, when there was one)."""
    cause = err.cause
    while isinstance(cause, TemporalTimeoutError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, ApplicationError):
        return f"{cause.type or 'ApplicationError'}: {cause.message}"
    return _describe(err) if cause is None else f"{type(cause).__name__}: {cause}"


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
