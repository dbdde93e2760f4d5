"""Recommendations: a pure ranking of the products a customer has not bought, by what they
viewed, searched and bought and by what customers who bought the same things bought.

Pure on purpose: the same signals always give the same list (ties by sku), so the tests pin
the ranking on fixed data. What gathers the signals is services/activity/signals.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel

CO_PURCHASE = 3
"""Points per other customer who bought the product and something the customer bought."""
VIEW = 2
"""Points per time the customer viewed the product..."""
MAX_VIEWS = 5
"""...counting at most this many views: a product viewed fifty times is not ten times as apt."""
SEARCHED_CATEGORY = 1
"""Points per search the customer filtered on the product's category (at most ``MAX_SAME``)."""
BOUGHT_CATEGORY = 1
"""Points per product the customer bought in the product's category (at most ``MAX_SAME``)."""
MAX_SAME = 3


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    category: str
    price_cents: int
    stock_on_hand: int


@dataclass(frozen=True)
class Signals:
    """What is known of the customer, and of who bought what."""

    bought: frozenset[str] = frozenset()
    """Skus in the customer's completed orders."""
    viewed: Mapping[str, int] = field(default_factory=dict)
    """Sku: how often the customer viewed it."""
    searched: Mapping[str, int] = field(default_factory=dict)
    """Category: how often the customer's searches filtered on it."""
    others: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Every other customer: the skus in their completed orders."""


class Recommendation(BaseModel):
    sku: str
    name: str
    category: str
    price_cents: int
    score: int
    reason: str
    """The strongest of ``reasons``."""
    reasons: list[str]
    """Why, strongest first: "bought by customers who bought Widget A", "you viewed it twice",
    "in a category you searched: books", "in a category you bought from: books"."""


def times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def rank(products: Iterable[Product], signals: Signals, limit: int = 10) -> list[Recommendation]:
    """The products in stock that the customer has not bought and that some signal points to,
    best first (ties by sku), at most ``limit``."""
    catalog = {p.sku: p for p in products}
    bought_categories = Counter(catalog[s].category for s in signals.bought if s in catalog)
    co_bought = _co_purchases(signals)
    ranked = []
    for product in catalog.values():
        if product.sku in signals.bought or product.stock_on_hand <= 0:
            continue
        # (points, order among equal points, reason): the order keeps equal reasons stable.
        parts: list[tuple[int, int, str]] = []
        buyers, because = co_bought.get(product.sku, (0, ""))
        if buyers:
            name = catalog[because].name if because in catalog else because
            parts.append((CO_PURCHASE * buyers, 0, f"bought by customers who bought {name}"))
        if views := signals.viewed.get(product.sku, 0):
            parts.append((VIEW * min(views, MAX_VIEWS), 1, f"you viewed it {times(views)}"))
        if searches := signals.searched.get(product.category, 0):
            points = SEARCHED_CATEGORY * min(searches, MAX_SAME)
            parts.append((points, 2, f"in a category you searched: {product.category}"))
        if owned := bought_categories.get(product.category, 0):
            points = BOUGHT_CATEGORY * min(owned, MAX_SAME)
            parts.append((points, 3, f"in a category you bought from: {product.category}"))
        if not parts:
            continue
        parts.sort(key=lambda part: (-part[0], part[1]))
        reasons = [reason for _, _, reason in parts]
        ranked.append(
            Recommendation(
                sku=product.sku,
                name=product.name,
                category=product.category,
                price_cents=product.price_cents,
                score=sum(points for points, _, _ in parts),
                reason=reasons[0],
                reasons=reasons,
            )
        )
    ranked.sort(key=lambda r: (-r.score, r.sku))
    return ranked[:limit]


def _co_purchases(signals: Signals) -> dict[str, tuple[int, str]]:
    """For each sku: how many other customers bought it along with something the customer
    bought, and which of the customer's purchases most of them share (ties by sku)."""
    buyers: Counter[str] = Counter()
    via: dict[str, Counter[str]] = {}
    for skus in signals.others.values():
        shared = skus & signals.bought
        if not shared:
            continue
        for sku in skus - signals.bought:
            buyers[sku] += 1
            via.setdefault(sku, Counter()).update(shared)
    return {
        sku: (n, min(via[sku].items(), key=lambda item: (-item[1], item[0]))[0])
        for sku, n in buyers.items()
    }
