"""The dead-letter path: a compensation that is stuck waits for an operator, never abandoned.

A compensation is stuck when it keeps failing past the saga's StuckPolicy, or when its service
refuses it for good (a non-retryable error). Either way the order shows it (COMPENSATION_STUCK,
its state's ``stuck``, an event) and the saga waits here until the compensation succeeds or an
operator has done it by hand (``resolve_compensation``). Meanwhile a compensation that failed
for a while is retried in rounds with a capped backoff, each failed round refreshing the error
an operator sees; one its service refused is retried only when an operator asks
(``retry_compensation``), which also starts a round at once in the other case.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from cloudmart.contracts.events import EventType
    from cloudmart.contracts.orders import (
        OrderStatus,
        ResolveCompensationUpdate,
        StuckCompensation,
        StuckPolicy,
    )
    from cloudmart.contracts.steps import Compensate, CompensationResult

from workflows.compensations import Compensation
from workflows.event_log import EventLog
from workflows.order_state import OrderProgress, refuse
from workflows.step_runner import StepRunner, last_error, refused_for_good
from workflows.stuck_rounds import StuckRounds


class StuckCompensations(StuckRounds):
    """What an operator asked of the stuck compensation (the saga's updates set it), and the
    rounds that retry it."""

    def __init__(
        self, steps: StepRunner, policy: StuckPolicy, progress: OrderProgress, events: EventLog
    ) -> None:
        super().__init__(steps, policy, progress, events)
        self.retry_now = False
        self.resolution: ResolveCompensationUpdate | None = None
        """An operator's resolution by hand, until it is applied (or refused)."""
        self.resolved = False
        """Whether the last resolution was applied."""

    def check_stuck(self) -> StuckCompensation:
        """Refuse an operator's action unless a compensation is stuck."""
        state = self._progress.state
        if state.stuck is None:
            refuse(f"order is {state.status}, no compensation is stuck", "NotStuck")
        return state.stuck

    def check_resolution(self, resolution: ResolveCompensationUpdate) -> None:
        stuck = self.check_stuck()
        if resolution.step != stuck.step:
            refuse(f"the stuck compensation is {stuck.step}, not {resolution.step}", "NotStuck")
        if self.resolution is not None:
            refuse(f"{stuck.step} is already being resolved", "NotStuck")

    async def resolve(self, resolution: ResolveCompensationUpdate) -> None:
        """Apply an operator's resolution by hand, unless the compensation succeeds first."""
        self.resolution, self.resolved = resolution, False
        await workflow.wait_condition(lambda: self.resolution is None)
        if not self.resolved:
            refuse(
                f"{resolution.step} succeeded before the resolution was applied; nothing was "
                "marked as done by hand",
                "CompensationSucceeded",
            )

    async def until_unstuck(
        self, compensation: Compensation, request: Compensate, failure: ActivityError
    ) -> CompensationResult | ResolveCompensationUpdate:
        """Report the compensation stuck with ``failure``; its result once it succeeds, or the
        operator's resolution."""
        state = self._progress.state
        stuck = StuckCompensation(
            step=compensation.name,
            since=workflow.now(),
            last_error=last_error(failure),
            retrying=not refused_for_good(failure),
        )
        state.stuck = stuck
        self._report(
            stuck, OrderStatus.COMPENSATION_STUCK, EventType.COMPENSATION_STUCK, "Compensation"
        )
        try:
            while True:
                self.retry_now = False
                if stuck.retrying:
                    result = await self._round(compensation, request, stuck)
                    if result is not None:
                        return result  # an operator's resolution arriving meanwhile is refused
                else:
                    await workflow.wait_condition(
                        lambda: self.retry_now or self.resolution is not None
                    )
                if self.resolution is not None:
                    self.resolved = True
                    return self.resolution
                stuck.retrying = stuck.retrying or self.retry_now
        finally:
            self.resolution = None
            state.stuck = None
            self._progress.set_status(OrderStatus.COMPENSATING)

    async def _round(
        self, compensation: Compensation, request: Compensate, stuck: StuckCompensation
    ) -> CompensationResult | None:
        """One round of retries, stopped early by an operator's retry-now or resolution."""
        outcome = await self._retry_round(
            compensation,
            request,
            summary="retry of a stuck compensation",
            stop=lambda: self.retry_now or self.resolution is not None,
        )
        if isinstance(outcome, ActivityError):
            stuck.rounds += 1
            stuck.last_error = last_error(outcome)
            stuck.retrying = not refused_for_good(outcome)
            return None
        return outcome
