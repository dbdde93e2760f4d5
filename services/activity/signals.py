"""What the recommendations rank by, gathered from where each fact lives: purchases from the
order event store (the source of truth), views and searches from the activity database, the
products in stock from the read side's ``product_search`` projection."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import Engine, select
from sqlmodel import Session

from cloudmart.contracts.events import EventType
from services.activity.recommendations import Product, Recommendation, Signals, rank
from services.activity.store import ActivityStore
from services.database import read_only
from services.event_store.models import EventRow
from services.event_store.upcasting import upcast
from services.readmodel.queries import ReadModel


def purchases(events: Engine) -> dict[str, frozenset[str]]:
    """Every customer's bought skus: the lines of their orders that completed.

    Read from the event store by a scan of two event types (neither is indexed by type; the
    ratings' purchase check reads the same way): its cost grows with the orders ever placed,
    which is fine for this reference and is what a co-purchase projection would take over."""
    placed = select(EventRow.aggregate_id, EventRow.version, EventRow.data).where(
        EventRow.event_type == EventType.ORDER_PLACED
    )
    completed = select(EventRow.aggregate_id).where(
        EventRow.event_type == EventType.ORDER_COMPLETED
    )
    bought: dict[str, set[str]] = defaultdict(set)
    with Session(read_only(events)) as session:
        done = set(session.scalars(completed))
        for order_id, version, data in session.execute(placed):
            if order_id not in done:
                continue
            current = upcast(EventType.ORDER_PLACED, version, data)[1]
            customer = current.get("customer_id")
            if isinstance(customer, str):
                bought[customer].update(item["sku"] for item in current["items"])
    return {customer: frozenset(skus) for customer, skus in bought.items()}


def catalog(read: ReadModel) -> list[Product]:
    """Every product (bought ones too: their categories count), in stock or not."""
    return [
        Product(
            sku=p.sku,
            name=p.name,
            category=p.category,
            price_cents=p.price_cents,
            stock_on_hand=p.stock_on_hand,
        )
        for p in read.products()
    ]


def recommend(
    customer_id: str,
    *,
    store: ActivityStore,
    events: Engine,
    read: ReadModel,
    limit: int = 10,
) -> list[Recommendation]:
    """The customer's recommendations, from the stores as they are now."""
    everyone = purchases(events)
    signals = Signals(
        bought=everyone.pop(customer_id, frozenset()),
        viewed=store.views(customer_id),
        searched=store.searched_categories(customer_id),
        others=everyone,
    )
    return rank(catalog(read), signals, limit)
