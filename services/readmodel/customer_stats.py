"""The arithmetic of the customer projections (UserView, UserStatistics), on its own.

Pure (no database, no clock): the projector's live path and its rebuild fold the same events
into the same numbers, and the unit tests check the definitions here directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta

FAVOURITES = 3
"""How many favourite categories a UserView shows."""
ACTIVE_WINDOW_DAYS = 30
"""A customer is active who placed an order within this many days of the data's latest day."""


def favourite_categories(units: Mapping[str, int], top: int = FAVOURITES) -> list[str]:
    """The categories a customer bought most units of, most first; a tie goes to the name that
    sorts first, so that the answer never depends on the order the purchases came in."""
    bought = [(category, n) for category, n in units.items() if n > 0]
    bought.sort(key=lambda item: (-item[1], item[0]))
    return [category for category, _ in bought[:top]]


def day_of(at: datetime) -> date:
    """The UTC day of an event: the statistics' days are UTC days, wherever they are read."""
    return at.astimezone(UTC).date()


def active_window(latest_day: date, days: int = ACTIVE_WINDOW_DAYS) -> tuple[date, date]:
    """The first and last day (both included) of the ``days`` days ending on ``latest_day``."""
    return latest_day - timedelta(days=days - 1), latest_day


def buyer_changes(completed_before: int, completed_after: int) -> tuple[int, int]:
    """How a customer's completed orders going from ``before`` to ``after`` change the number of
    buyers (at least one completed order) and repeat buyers (at least two)."""

    def buyer(n: int) -> int:
        return 1 if n >= 1 else 0

    def repeat(n: int) -> int:
        return 1 if n >= 2 else 0

    return (
        buyer(completed_after) - buyer(completed_before),
        repeat(completed_after) - repeat(completed_before),
    )


def repeat_purchase_rate(buyers: int, repeat_buyers: int) -> float | None:
    """Customers with at least two completed orders over those with at least one; None while
    nobody has completed an order (no rate, rather than a rate of 0)."""
    return repeat_buyers / buyers if buyers else None


def average_order_value(completed_cents: int, completed_orders: int) -> int | None:
    """The completed orders' mean total, to the nearest cent (a half cent rounds up); None
    while there are none."""
    if not completed_orders:
        return None
    return (2 * completed_cents + completed_orders) // (2 * completed_orders)
