"""The dead letter of the forward steps: a step that keeps failing is reported, never silent.

A forward step whose service keeps failing with errors it may recover from (its database down,
a provider timing out) is stuck once the saga's StuckPolicy says so: the same attempts or time,
whichever first, as for a compensation. The order shows it (STEP_STUCK, its state's
``stuck_step``, a ``StepStuck`` event stored at once, the worker's log) and the step is retried
in rounds with a capped backoff (stuck_rounds.py), each failed round refreshing the error an
operator sees, until it succeeds and the saga goes on, or:

- an operator asks to retry it now (``retry_step``): a new round starts at once, recorded as
  ``StepRetried`` by whoever asked;
- an operator aborts the order (``abort``, accepted by decisions.py): recorded as
  ``OrderAborted``, the step fails with ``AbortedByOperator`` and the saga compensates what was
  done, in reverse, as after any failure. An accepted abort wins over a round that succeeds
  meanwhile: the step's compensation was pushed before it ran;
- its service refuses it for good (a business failure): it fails as any step does;
- the order is cancelled (by its customer, or through Temporal): as for a step in flight.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from cloudmart.contracts.activities import ActivitySpec
    from cloudmart.contracts.events import EventType
    from cloudmart.contracts.failures import AbortedByOperator
    from cloudmart.contracts.orders import (
        AbortOrderUpdate,
        OrderStatus,
        RetryStepUpdate,
        StuckPolicy,
        StuckStep,
    )

from workflows.decisions import Decisions
from workflows.event_log import EventLog
from workflows.order_state import OPERATOR, OrderProgress, refuse
from workflows.step_runner import StepRunner, last_error, refused_for_good
from workflows.stuck_rounds import StuckRounds

ResultT = TypeVar("ResultT", bound=BaseModel)


class StuckSteps(StuckRounds):
    """The rounds that retry a stuck step, and an operator's retry-now (the saga's ``retry_step``
    update sets it); an operator's abort is one of the saga's decisions."""

    def __init__(
        self,
        steps: StepRunner,
        policy: StuckPolicy,
        progress: OrderProgress,
        events: EventLog,
        decisions: Decisions,
    ) -> None:
        super().__init__(steps, policy, progress, events)
        self._decisions = decisions
        self.retry: RetryStepUpdate | None = None
        """An operator's retry-now, until the round it starts."""

    def check_retry(self) -> None:
        """The ``retry_step`` update's validator."""
        state = self._progress.state
        if state.stuck_step is None:
            refuse(f"order is {state.status}, no step is stuck", "NotStuck")
        if self._decisions.abort is not None:
            refuse("an operator aborted the order; it is being compensated", "NotStuck")
        if state.cancel_reason is not None:
            refuse("order was cancelled; it is being compensated", "NotStuck")

    async def until_unstuck(
        self, spec: ActivitySpec[Any, ResultT], request: BaseModel, failure: ActivityError
    ) -> ResultT:
        """Report the step stuck with ``failure``; its result once a round succeeds."""
        state = self._progress.state
        running = state.status
        stuck = StuckStep(step=spec.name, since=workflow.now(), last_error=last_error(failure))
        state.stuck_step = stuck
        self._report(stuck, OrderStatus.STEP_STUCK, EventType.STEP_STUCK, "Step")
        try:
            while True:
                outcome = await self._retry_round(
                    spec,
                    request,
                    summary="retry of a stuck step",
                    stop=lambda: self.retry is not None or self._decisions.abort is not None,
                )
                if self._decisions.abort is not None:
                    raise self._aborted(stuck, self._decisions.abort)
                if self.retry is not None:
                    self._retried(stuck, self.retry)
                if isinstance(outcome, ActivityError):
                    if refused_for_good(outcome):
                        raise outcome
                    stuck.rounds += 1
                    stuck.last_error = last_error(outcome)
                elif outcome is not None:
                    self._progress.set_status(running)
                    return outcome
        finally:
            state.stuck_step = None

    def _retried(self, stuck: StuckStep, retry: RetryStepUpdate) -> None:
        self.retry = None
        self._events.record(
            EventType.STEP_RETRIED, by=retry.by or OPERATOR, step=stuck.step, error=stuck.last_error
        )
        self._events.flush()  # who asked is on record even if the step stays stuck

    def _aborted(self, stuck: StuckStep, abort: AbortOrderUpdate) -> ApplicationError:
        self._events.record(
            EventType.ORDER_ABORTED,
            by=abort.by or OPERATOR,
            step=stuck.step,
            error=stuck.last_error,
            reason=abort.reason,
        )
        return ApplicationError(
            f"{abort.reason} (while {stuck.step} was stuck: {stuck.last_error})",
            type=AbortedByOperator.type_name(),
            non_retryable=True,
        )
