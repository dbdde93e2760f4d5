"""How a service's failure crosses into Temporal, and so into its history and the worker's log.

A failure's message and stack trace are not payloads: Temporal stores them as they are (unless a
failure converter encodes them), shows them in ``describe`` and the Web UI, and the SDK logs the
exception with its chain. So only messages we wrote cross as they are; an error from a library,
a database error above all, crosses as its type and a message that quotes nothing: SQLAlchemy's
and the drivers' messages can quote the failed row (PostgreSQL's ``DETAIL: Failing row
contains (...)``), which for a charge holds the payment token and for a shipment the address.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import TracebackType
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import DBAPIError
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory, FailureError

from cloudmart.contracts.failures import BusinessFailure

P = ParamSpec("P")
R = TypeVar("R")

OWN_PACKAGES = ("activities", "cloudmart", "services")
"""Exceptions defined in these packages carry messages we wrote: order ids, SKUs, quantities,
amounts, never a payment token or an address (docs/security.md)."""


def failures_for_temporal(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap an activity: every exception it raises crosses into Temporal as an
    ``ApplicationError`` whose ``type`` is the exception's class name.

    A service's ``BusinessFailure`` is non-retryable (the workflow reports its type and message
    as the order's failure); anything else stays retryable, Temporal retrying it with backoff.
    The original exception is never chained (``from None``): its message would travel as the
    failure's cause. Its traceback's frames in our code are kept: code lines, no values.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except FailureError:
            raise  # Temporal's own (a cancellation): the SDK handles it
        except Exception as err:
            raise for_temporal(err).with_traceback(_own_frames(err.__traceback__)) from None

    return wrapper


def for_temporal(err: Exception) -> ApplicationError:
    """What Temporal, and the worker's log, get of ``err``."""
    kind = type(err).__name__
    if isinstance(err, BusinessFailure):
        return ApplicationError(
            str(err),
            type=err.type_name(),
            non_retryable=True,
            # An expected outcome, not an incident: no warning with a traceback in the logs.
            category=ApplicationErrorCategory.BENIGN,
        )
    if type(err).__module__.split(".")[0] in OWN_PACKAGES:
        return ApplicationError(str(err), type=kind)
    return ApplicationError(f"{_database_error(err)}{WITHHELD}", type=kind)


WITHHELD = "message withheld: it may quote the order's data"


def _own_frames(traceback: TracebackType | None) -> TracebackType | None:
    """The traceback's frames in our own code: where it failed. With a library's frames too
    (SQLAlchemy's run to dozens), the failure outgrew Temporal's limit for a pending activity's
    last failure, and ``describe`` showed only "Failure exceeds size limit"."""
    own = []
    while traceback is not None:
        module = traceback.tb_frame.f_globals.get("__name__", "")
        if module.split(".")[0] in OWN_PACKAGES:
            own.append(traceback)
        traceback = traceback.tb_next
    trimmed = None
    for frame in reversed(own):
        trimmed = TracebackType(trimmed, frame.tb_frame, frame.tb_lasti, frame.tb_lineno)
    return trimmed


def _database_error(err: Exception) -> str:
    """The driver's error and code (SQLite's name, PostgreSQL's SQLSTATE): what went wrong,
    without quoting a value."""
    driver = err.orig if isinstance(err, DBAPIError) else None
    if driver is None:
        return ""
    code = getattr(driver, "sqlite_errorname", None) or getattr(driver, "sqlstate", None)
    named = f"{type(driver).__module__}.{type(driver).__name__}"
    return f"database error ({named}{f' {code}' if code else ''}); "
