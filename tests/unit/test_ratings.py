"""Product ratings without a database: the search's arithmetic, and what a rating may say."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from cloudmart.contracts.ratings import RateProduct
from services.readmodel.ratings import Tally


def test_an_unrated_product_has_no_average_not_zero() -> None:
    assert Tally().average is None
    assert (Tally().count, Tally().total) == (0, 0)


def test_first_ratings_each_count_once() -> None:
    tally = Tally().rate(5, None).rate(4, None).rate(4, None)
    assert (tally.count, tally.total) == (3, 13)
    assert tally.average == pytest.approx(13 / 3)


def test_a_changed_rating_supersedes_the_earlier_one() -> None:
    tally = Tally().rate(5, None).rate(1, None)  # two customers: 3.0
    changed = tally.rate(3, previous=1)  # the second changes 1 -> 3
    assert (changed.count, changed.total, changed.average) == (2, 8, 4.0)
    again = changed.rate(3, previous=3)  # the same again changes nothing
    assert again == changed


def test_every_change_leaves_only_the_latest_ratings() -> None:
    latest: dict[str, int] = {}
    tally = Tally()
    for customer, stars in [("a", 5), ("b", 2), ("a", 1), ("c", 4), ("b", 5), ("a", 3)]:
        tally = tally.rate(stars, latest.get(customer))
        latest[customer] = stars
    assert (tally.count, tally.total) == (3, 12)
    assert tally.average == 4.0


VALID = {"stars": 4, "comment": "  Solid keyboard.  ", "customer_id": "c-42"}


def test_a_rating_is_a_whole_number_of_stars_with_a_clean_comment() -> None:
    rating = RateProduct.model_validate(VALID)
    assert (rating.stars, rating.comment) == (4, "Solid keyboard.")  # stripped
    assert RateProduct.model_validate({"stars": 1}).comment is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"stars": 0}, "stars"),
        ({"stars": 6}, "stars"),
        ({"stars": 4.5}, "stars"),
        ({"stars": 4.0}, "stars"),  # strict: not an integer, whatever Python makes of it
        ({"stars": "4"}, "stars"),
        ({"stars": True}, "stars"),
        ({"stars": None}, "stars"),
        ({"comment": "x" * 501}, "comment"),
        ({"comment": "   "}, "comment"),
        ({"comment": "fine\x00"}, "comment"),
        ({"comment": "good \u202eboog"}, "comment"),  # a right-to-left override
        ({"comment": "zero\u200bwidth"}, "comment"),
        ({"customer_id": "c 42"}, "customer_id"),
        ({"price": 1}, "price"),  # unknown fields are refused, not ignored
    ],
)
def test_a_bad_rating_names_its_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        RateProduct.model_validate({**VALID, **change})
    assert [error["loc"][0] for error in raised.value.errors()] == [field]
