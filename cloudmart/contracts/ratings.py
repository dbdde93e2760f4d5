"""Product ratings: the body of ``POST /products/{sku}/ratings``, its answer, and the
``ProductRated`` event's data.

A rating is a command on the product, not on an order: each is a ``ProductRated`` event in the
product's own stream of the event store (aggregate ``product-<sku>``). A customer has one rating
per product; a later one supersedes the earlier (a new event, never a rewrite).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from cloudmart.contracts.text import Comment, CustomerId

MIN_STARS, MAX_STARS = 1, 5

PRODUCT_STREAM_PREFIX = "product-"
MAX_RATED_SKU_LENGTH = 64 - len(PRODUCT_STREAM_PREFIX)
"""The store's aggregate ids are at most 64 characters; a product's stream id must fit."""

RatedSku = Annotated[
    str,
    StringConstraints(pattern=rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_RATED_SKU_LENGTH - 1}}}$"),
]

Stars = Annotated[
    int,
    # strict: 4.0, "4" and true are not a number of stars, whatever Python would make of them.
    Field(ge=MIN_STARS, le=MAX_STARS, strict=True, description="a whole number from 1 to 5"),
]


def product_stream(sku: str) -> str:
    """The event store's aggregate id of the product's ratings."""
    return f"{PRODUCT_STREAM_PREFIX}{sku}"


class RateProduct(BaseModel):
    """The body of ``POST /products/{sku}/ratings``."""

    # Unknown fields are refused rather than ignored, as for orders: a typo must not pass.
    model_config = ConfigDict(extra="forbid", frozen=True)

    stars: Stars
    comment: Comment | None = None
    customer_id: CustomerId | None = Field(
        default=None,
        description="Who rates: required without a customer token; with one, the token's "
        "customer (another is a 403), and may be left out.",
    )


class RatingOutcome(StrEnum):
    CREATED = "created"
    """The customer's first rating of the product (201)."""
    CHANGED = "changed"
    """It superseded their earlier one (200)."""
    UNCHANGED = "unchanged"
    """The same as their current one: nothing was stored (200; a retry lands here)."""


class ProductRating(BaseModel):
    """The answer: the customer's rating of the product as it now stands."""

    sku: str
    customer_id: str
    stars: int
    comment: str | None
    outcome: RatingOutcome


class ProductRated(BaseModel):
    """The ``ProductRated`` event's data (version 1)."""

    model_config = ConfigDict(frozen=True)

    sku: str
    customer_id: str
    stars: int
    comment: str | None
