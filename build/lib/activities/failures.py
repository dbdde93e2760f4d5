"""How a service's business failure crosses into Temporal."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from cloudmart.contracts.failures import BusinessFailure

P = ParamSpec("P")
R = TypeVar("R")


def business_failures_are_final(fn: Callable[P, R]) -> Callable[P, R]:
    """Raise a service's ``BusinessFailure`` as a non-retryable ``ApplicationError``.

    Its ``type`` is the failure's class name, which the workflow reports as the order's failure
    type. Every other exception stays retryable: Temporal retries it with backoff.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except BusinessFailure as failure:
            raise ApplicationError(
                str(failure),
                type=failure.type_name(),
                non_retryable=True,
                # An expected outcome, not an incident: no warning with a traceback in the logs.
                category=ApplicationErrorCategory.BENIGN,
            ) from failure

    return wrapper
