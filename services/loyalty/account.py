"""A customer's loyalty account: a pure fold over its events, with upcasting of old versions.

Schema history: PointsAwarded 1 -> 2: ``order`` became ``order_id``, and ``reason`` was added.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel

POINTS_AWARDED = "PointsAwarded"
POINTS_REVOKED = "PointsRevoked"
CURRENT_VERSION = {POINTS_AWARDED: 2, POINTS_REVOKED: 1}
STATE_VERSION = 2
"""The shape of ``Account`` as snapshots store it (1 kept the whole history: no longer read)."""
CENTS_PER_POINT = 100


def points_for(total_cents: int | None) -> int:
    """The rule: a completed order earns a point per whole currency unit of its total. Loyalty
    awards them; the read side's UserView counts them with this same function."""
    return (total_cents or 0) // CENTS_PER_POINT


class HistoryEntry(BaseModel):
    event_type: str
    points: int
    order_id: str
    reason: str
    occurred_at: datetime


class Account(BaseModel):
    """The account's state: what its events add up to, however many there are (constant size,
    so a snapshot of it is small and loading it costs the same at any length of history)."""

    customer_id: str
    points: int = 0
    awarded: int = 0
    """Points ever awarded (``points`` is awarded minus revoked)."""
    revoked: int = 0
    version: int = 0
    """The sequence number of the last event applied."""


class Statement(BaseModel):
    """``GET /customers/{id}/loyalty``: the balance, and the latest entries of the account."""

    customer_id: str
    points: int
    history: list[HistoryEntry]
    """The account's latest events (at most 100), oldest first."""


class AccountEventData(BaseModel):
    """An account event as the fold sees it (at its current version)."""

    sequence: int
    event_type: str
    data: dict[str, Any]
    occurred_at: datetime

    def entry(self) -> HistoryEntry:
        return HistoryEntry(event_type=self.event_type, occurred_at=self.occurred_at, **self.data)


def upcast(event_type: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
    if event_type == POINTS_AWARDED and version == 1:
        data = {"points": data["points"], "order_id": data["order"], "reason": "order completed"}
    return data


def apply(account: Account, event: AccountEventData) -> Account:
    points = event.data["points"]
    if event.event_type == POINTS_AWARDED:
        change = {"points": account.points + points, "awarded": account.awarded + points}
    elif event.event_type == POINTS_REVOKED:
        change = {"points": account.points - points, "revoked": account.revoked + points}
    else:
        raise ValueError(f"not an account event: {event.event_type}")
    return account.model_copy(update={**change, "version": event.sequence})


def fold(account: Account, events: Iterable[AccountEventData]) -> Account:
    for event in events:
        account = apply(account, event)
    return account
