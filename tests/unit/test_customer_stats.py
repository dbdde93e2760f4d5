"""The customer projections' arithmetic without a database: loyalty's points rule as the
UserView uses it, favourite categories, and the definitions of the statistics."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from services.loyalty.account import points_for
from services.readmodel.customer_stats import (
    active_window,
    average_order_value,
    buyer_changes,
    day_of,
    favourite_categories,
    repeat_purchase_rate,
)


@pytest.mark.parametrize(
    ("total_cents", "points"),
    [(None, 0), (0, 0), (99, 0), (100, 1), (17_998, 179), (100_000, 1000)],
)
def test_a_completed_order_earns_a_point_per_whole_currency_unit(
    total_cents: int | None, points: int
) -> None:
    assert points_for(total_cents) == points


def test_favourites_are_the_three_categories_with_most_units_ties_by_name() -> None:
    units = {"toys": 2, "books": 5, "audio": 2, "garden": 1, "kitchen": 2}
    assert favourite_categories(units) == ["books", "audio", "kitchen"]
    assert favourite_categories({"toys": 1}) == ["toys"]
    assert favourite_categories({}) == []
    assert favourite_categories({"toys": 0, "books": 1}) == ["books"]  # none bought: not one


def test_favourites_do_not_depend_on_the_order_purchases_came_in() -> None:
    forwards = {"b": 3, "a": 3, "c": 3, "d": 4}
    backwards = dict(reversed(list(forwards.items())))
    assert favourite_categories(forwards) == favourite_categories(backwards) == ["d", "a", "b"]


def test_the_day_of_an_event_is_its_utc_day() -> None:
    late_in_berlin = datetime(2026, 12, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert day_of(late_in_berlin) == date(2026, 11, 30)
    assert day_of(datetime(2026, 12, 1, 23, 59, tzinfo=UTC)) == date(2026, 12, 1)


def test_the_active_window_is_the_thirty_days_ending_on_the_latest() -> None:
    assert active_window(date(2026, 12, 31)) == (date(2026, 12, 2), date(2026, 12, 31))
    assert active_window(date(2026, 3, 1), days=1) == (date(2026, 3, 1), date(2026, 3, 1))


@pytest.mark.parametrize(
    ("before", "after", "changes"),
    [(0, 1, (1, 0)), (1, 2, (0, 1)), (2, 3, (0, 0)), (0, 0, (0, 0)), (5, 6, (0, 0))],
)
def test_a_completed_order_makes_a_buyer_then_a_repeat_buyer(
    before: int, after: int, changes: tuple[int, int]
) -> None:
    assert buyer_changes(before, after) == changes


def test_the_repeat_purchase_rate() -> None:
    assert repeat_purchase_rate(buyers=0, repeat_buyers=0) is None  # no buyers: no rate
    assert repeat_purchase_rate(buyers=4, repeat_buyers=1) == 0.25
    assert repeat_purchase_rate(buyers=3, repeat_buyers=3) == 1.0


def test_the_average_order_value_is_to_the_nearest_cent() -> None:
    assert average_order_value(0, 0) is None
    assert average_order_value(3000, 2) == 1500
    assert average_order_value(1001, 2) == 501  # 500.5: a half cent rounds up
    assert average_order_value(1000, 3) == 333  # 333.33
    assert average_order_value(2000, 3) == 667  # 666.67
