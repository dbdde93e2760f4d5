"""Query parameters more than one route reads: ``as_of`` (a point in an aggregate's history)
and times from a query string, each a 422 naming the parameter when it is bad."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Query

from api.errors import UnprocessableField
from services.event_store.as_of import AsOf

AsOfQuery = Annotated[
    str | None,
    Query(
        max_length=64,
        description="An ISO 8601 time with a time zone (events that occurred at or before it; "
        "send a '+' as %2B), or an event sequence number from 0 (events numbered up to it). "
        "Absent: every stored event.",
    ),
]


SEQUENCE = re.compile(r"[0-9]+")
"""ASCII digits only: ``int()`` would also take "+5", " 5", "5_0" and other scripts' digits."""


def parse_as_of(value: str | None) -> AsOf:
    """``as_of`` as a sequence number or an aware time in UTC; a 422 naming it otherwise."""
    if value is None:
        return None
    if SEQUENCE.fullmatch(value):
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UnprocessableField(
            ("query", "as_of"),
            "not an event sequence number (an integer from 0) nor an ISO 8601 time with a "
            "time zone, such as 2026-01-31T12:00:00Z (send a '+' as %2B)",
            "as_of_parsing",
        ) from None
    if moment.tzinfo is None:
        # A time with no zone names a different instant in every zone: refused, not guessed.
        raise UnprocessableField(
            ("query", "as_of"), "a time needs its time zone (Z or +hh:mm)", "timezone_aware"
        )
    return utc_query(moment, "as_of")


def utc_query(value: datetime | None, field: str) -> datetime | None:
    """In UTC, as the projection stores times; a time that does not fit (year 1 at +14:00) is
    the client's error, not the database's."""
    if value is None:
        return None
    try:
        return value.astimezone(UTC)
    except OverflowError as err:
        raise UnprocessableField(("query", field), "out of range", "datetime_range") from err
