"""Running a step or a compensation: an activity on its service's task queue.

A forward step (``step``) shows in the order's state while it runs, and its failure is recorded
as an event. While the saga's events wait to be stored, an activity's first attempt is a round
of its own, bounded by the events window: if it fails, or has not ended within the window (a
service down, a slow provider), the saga stores its events first and then goes on with the rest
of the retry policy and limits. Steps are idempotent, keyed by the order id, so an attempt that
the bound cut short and that finished anyway is harmless. A typed business failure, or a
cancel, ends the activity as it would have. A forward step that keeps failing otherwise, past
the saga's StuckPolicy, is stuck: stuck_steps.py takes it over.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    RetryState,
    is_cancelled_exception,
)
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

with workflow.unsafe.imports_passed_through():
    from cloudmart.contracts.activities import ActivitySpec
    from cloudmart.contracts.events import EventType
    from cloudmart.contracts.orders import Failure, OrderStatus, StepStatus, StuckPolicy
    from cloudmart.contracts.routing import TaskQueues

from workflows.event_log import EventLog
from workflows.order_state import SYSTEM, OrderProgress
from workflows.retry_policies import STEP_TIMEOUT, step_retry

ResultT = TypeVar("ResultT", bound=BaseModel)

CANCEL_AFTER_A_STEP = "cancel-after-a-step"
"""Added after 1.0: a cancel accepted in the workflow task that also delivers a step's result
cancels the order once that step is done. The SDK runs update handlers before it applies the
task's activity results, and a result already in hand is not taken back by cancelling the task
awaiting it: 1.0 went on to the next step, and a cancel answered 202 could end COMPLETED.
Sagas of 1.0 that raced so replay as they ran (docs/versioning.md)."""


class WhenStuck(Protocol):
    async def until_unstuck(
        self, spec: ActivitySpec[Any, ResultT], request: BaseModel, failure: ActivityError
    ) -> ResultT: ...


class StepRunner:
    def __init__(
        self, queues: TaskQueues, progress: OrderProgress, events: EventLog, policy: StuckPolicy
    ) -> None:
        self._queues = queues
        self._progress = progress
        self._events = events
        self._policy = policy
        self.stuck: WhenStuck | None = None
        """Takes over a forward step that keeps failing past the policy (stuck_steps.py);
        without it, the step's error is raised."""

    async def step(
        self,
        status: OrderStatus | None,
        spec: ActivitySpec[Any, ResultT],
        request: BaseModel,
        *,
        summary: str,
        failed: EventType | None = None,
    ) -> ResultT:
        """A forward step: the order's ``status`` while it runs (None: unchanged), its record in
        the order's steps, and ``failed`` recorded if its service refuses it."""
        state = self._progress.state
        if status is not None:
            self._progress.set_status(status)
        record = self._progress.begin(state.steps, spec.name)
        try:
            result = await self._until_done(spec, request, summary)
        except ApplicationError as aborted:  # by an operator, while the step was stuck
            self._progress.end(record, StepStatus.FAILED, describe(aborted))
            raise
        except (ActivityError, asyncio.CancelledError) as err:
            if state.cancel_reason is not None:
                self._progress.end(record, StepStatus.CANCELLED)
            else:
                self._progress.end(record, StepStatus.FAILED, describe(err))
                if failed is not None:
                    failure = failure_of(err)
                    self._events.record(
                        failed, by=SYSTEM, type=failure.type, message=failure.message
                    )
            raise
        self._progress.end(record, StepStatus.COMPLETED)
        if state.cancel_reason is not None and workflow.patched(CANCEL_AFTER_A_STEP):
            raise asyncio.CancelledError("order cancelled")  # its compensation was pushed
        return result

    async def _until_done(
        self, spec: ActivitySpec[Any, ResultT], request: BaseModel, summary: str
    ) -> ResultT:
        """Its result; once its attempts ran out (the policy's attempts or time), what the stuck
        step's rounds and an operator make of it."""
        policy = self._policy
        try:
            return await self.run(
                spec,
                request,
                retry_policy=step_retry(policy),
                schedule_to_close_timeout=policy.after,  # past either limit: stuck
                summary=summary,
            )
        except ActivityError as err:
            if self.stuck is None or not retries_ran_out(err):
                raise
            return await self.stuck.until_unstuck(spec, request, err)

    def start(
        self, spec: ActivitySpec[Any, ResultT], request: BaseModel, **options: Any
    ) -> workflow.ActivityHandle[ResultT]:
        return workflow.start_activity(
            spec.name,
            request,
            result_type=spec.result_type,
            task_queue=self._queues.for_service(spec.service),
            start_to_close_timeout=STEP_TIMEOUT,
            **options,
        )

    async def run(
        self, spec: ActivitySpec[Any, ResultT], request: BaseModel, **options: Any
    ) -> ResultT:
        """Run to its result; ``options`` as ``workflow.start_activity`` takes them, with a
        ``retry_policy``."""
        window = self._events.window
        policy: RetryPolicy = options["retry_policy"]
        limit: timedelta | None = options.get("schedule_to_close_timeout")
        if (
            not self._events.waiting
            or policy.maximum_attempts == 1
            or (limit is not None and limit <= window)
        ):
            return await self.start(spec, request, **options)
        first = {
            **options,
            "retry_policy": replace(policy, maximum_attempts=1),
            "schedule_to_close_timeout": window,
        }
        try:
            return await self.start(spec, request, **first)
        except ActivityError as err:
            # (A cancelled order's compensations run on: only their own cancellation ends them.)
            if refused_for_good(err) or is_cancelled_exception(err):
                raise
        self._events.flush()
        rest = {**options}
        if policy.maximum_attempts > 1:
            rest["retry_policy"] = replace(policy, maximum_attempts=policy.maximum_attempts - 1)
        if limit is not None:
            rest["schedule_to_close_timeout"] = limit - window
        return await self.start(spec, request, **rest)


def refused_for_good(err: ActivityError) -> bool:
    """Whether the activity's service said it can never succeed (a non-retryable error)."""
    return err.retry_state is RetryState.NON_RETRYABLE_FAILURE


def retries_ran_out(err: ActivityError) -> bool:
    """Whether the activity failed for its retry policy's limits (attempts, or its schedule to
    close timeout), each attempt with an error its service may recover from."""
    return err.retry_state in (RetryState.MAXIMUM_ATTEMPTS_REACHED, RetryState.TIMEOUT)


def failure_of(abort: BaseException) -> Failure:
    """What a failed step tells the order: its error's type and message."""
    cause = abort.cause if isinstance(abort, ActivityError) and abort.cause else abort
    if isinstance(cause, ApplicationError):
        return Failure(type=cause.type or "ApplicationError", message=cause.message)
    return Failure(type=type(cause).__name__, message=str(cause))


def describe(err: BaseException) -> str:
    failure = failure_of(err)
    return f"{failure.type}: {failure.message}"


def last_error(err: ActivityError) -> str:
    """What the last attempt failed with, also when the limit that ended the retries was a
    timeout (its cause is the last attempt's failure, when there was one)."""
    cause = err.cause
    while isinstance(cause, TemporalTimeoutError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, ApplicationError):
        return f"{cause.type or 'ApplicationError'}: {cause.message}"
    return describe(err) if cause is None else f"{type(cause).__name__}: {cause}"
