"""What both dead letters share: reporting an activity stuck, and retrying it in rounds.

A forward step (stuck_steps.py) or a compensation (stuck_compensations.py) that keeps failing
past the saga's StuckPolicy is reported where operators look (the order's status, its search
attribute, an event stored at once, the worker's log), then retried in rounds of
``stuck_round_retry``: a round is one activity of several attempts, so a stuck saga's history
grows by a few events per round, not per attempt, and each failed round refreshes the error an
operator sees. An operator's action stops the round in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ActivityError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from cloudmart.contracts.activities import ActivitySpec
    from cloudmart.contracts.events import EventType
    from cloudmart.contracts.orders import OrderStatus, StuckPolicy, StuckStep

from workflows.event_log import EventLog
from workflows.order_state import SYSTEM, OrderProgress
from workflows.retry_policies import stuck_round_retry
from workflows.step_runner import StepRunner

ResultT = TypeVar("ResultT", bound=BaseModel)


class StuckRounds:
    """Base of both dead letters: what reports an activity stuck and retries it in rounds."""

    def __init__(
        self, steps: StepRunner, policy: StuckPolicy, progress: OrderProgress, events: EventLog
    ) -> None:
        self._steps = steps
        self._policy = policy
        self._progress = progress
        self._events = events

    def _report(self, stuck: StuckStep, status: OrderStatus, event: EventType, what: str) -> None:
        """Show the order ``status`` with ``stuck``: its state, search attribute, event and log."""
        self._progress.set_status(status)
        self._events.record(event, by=SYSTEM, step=stuck.step, error=stuck.last_error)
        self._events.flush()  # an operator is needed: the read side shows it now
        workflow.logger.error("%s %s is stuck: %s", what, stuck.step, stuck.last_error)

    async def _retry_round(
        self,
        spec: ActivitySpec[Any, ResultT],
        request: BaseModel,
        *,
        summary: str,
        stop: Callable[[], bool],
    ) -> ResultT | ActivityError | None:
        """One round of retries of a stuck activity: its result, the error that ended the
        round, or None when ``stop()`` (an operator acted) ended it first.

        A round stopped for an operator, or by a cancel of the order, is cancelled and ends
        only once its attempt has: nothing of it runs on behind the operator's back, nor behind
        the compensations'. The cancel is then raised."""
        round_ = self._steps.start(
            spec,
            request,
            retry_policy=stuck_round_retry(self._policy),
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=summary,
        )
        try:
            await workflow.wait_condition(lambda: round_.done() or stop())
        except asyncio.CancelledError:
            round_.cancel()
            with contextlib.suppress(ActivityError, asyncio.CancelledError):
                await round_
            raise
        if not round_.done():
            round_.cancel()
        try:
            return await round_
        except (ActivityError, asyncio.CancelledError) as err:
            if is_cancelled_exception(err):
                return None
            assert isinstance(err, ActivityError)
            return err
