"""How long the saga's activities may run, and how they are retried."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from cloudmart.contracts.orders import StuckPolicy

STEP_TIMEOUT = timedelta(seconds=10)
"""Each step is one short transaction (plus a provider call): a worker that dies mid-step is
noticed within this time and the step is retried on another worker."""

STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
"""Only a typed business failure (raised non-retryable) fails a step; one that keeps failing
otherwise is reported stuck by its StuckPolicy (``step_retry``), and retried on in rounds."""

APPEND_RETRY = STEP_RETRY
"""The event store may be down for a while: appends retry until it is back."""

UNDO_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
)
"""A compensation retries until its StuckPolicy reports it stuck, then on in rounds."""

STUCK_ROUND_ATTEMPTS = 10
"""Once stuck, a step or compensation is retried in rounds of this many attempts, backing off
from a minute to the policy's cap; each failed round refreshes the error an operator sees.
Rounds keep the history small: a round (about 37 minutes at the default 5-minute cap) costs
about six events, not six per attempt."""
STUCK_FIRST_BACKOFF = timedelta(minutes=1)


def step_retry(policy: StuckPolicy) -> RetryPolicy:
    """A forward step's attempts until it is reported stuck."""
    return replace(STEP_RETRY, maximum_attempts=policy.attempts)


def undo_retry(policy: StuckPolicy) -> RetryPolicy:
    """A compensation's attempts until it is reported stuck."""
    return replace(UNDO_RETRY, maximum_attempts=policy.attempts)


def stuck_round_retry(policy: StuckPolicy) -> RetryPolicy:
    """One round of retries of a stuck step or compensation."""
    return replace(
        UNDO_RETRY,
        initial_interval=min(STUCK_FIRST_BACKOFF, policy.retry_cap),
        maximum_interval=policy.retry_cap,
        maximum_attempts=STUCK_ROUND_ATTEMPTS,
    )
