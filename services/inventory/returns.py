"""Inventory's part in the return saga (docs/returns.md): an accepted return's lines go back
into stock (sold units become units on hand again); when the refund is then refused for good,
they are taken out again (as many as are still on hand), compensating the restock.

A handler of services/choreography: it follows the event store (its own checkpoint, inbox and
outbox in inventory's database, the only one it writes) and publishes its reactions there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlmodel import Session

from cloudmart.contracts.events import StoredEvent
from cloudmart.contracts.returns import VERSION, ReturnEvent, carried
from services.choreography.outbox import Reaction
from services.database import get_for_update, utcnow
from services.inventory.models import Product, ReturnRestock


class CannotRestock(ValueError):
    """More units returned than the product has sold, or an unknown product: a poison event."""


class InventoryReturns:
    consumer = "inventory-returns"
    publisher = "inventory"

    def handles(self, event: StoredEvent) -> bool:
        return event.event_type in (
            ReturnEvent.RETURN_ACCEPTED,
            ReturnEvent.RETURN_REFUND_REFUSED,
        )

    def handle(self, session: Session, event: StoredEvent) -> Sequence[Reaction]:
        data = event.data
        if event.event_type == ReturnEvent.RETURN_ACCEPTED:
            _restock(session, data)
            return [Reaction(event.aggregate_id, ReturnEvent.STOCK_RESTOCKED, carried(data))]
        taken = _unrestock(session, data)
        reaction = {**carried(data), "unrestocked": taken}
        return [Reaction(event.aggregate_id, ReturnEvent.STOCK_UNRESTOCKED, reaction, VERSION)]


def _restock(session: Session, data: dict[str, Any]) -> None:
    if session.get(ReturnRestock, data["return_id"]) is not None:
        return
    lines = [{"sku": line["sku"], "quantity": line["quantity"]} for line in data["lines"]]
    for line in sorted(lines, key=lambda line: line["sku"]):  # one lock order: no deadlocks
        product = get_for_update(session, Product, line["sku"])
        if product is None or product.sold < line["quantity"]:
            raise CannotRestock(
                f"return {data['return_id']}: cannot restock {line['quantity']} of "
                f"{line['sku']} (sold: {product.sold if product else 'no such product'})"
            )
        product.sold -= line["quantity"]
        product.stock_on_hand += line["quantity"]
    session.add(ReturnRestock(return_id=data["return_id"], order_id=data["order_id"], lines=lines))


def _unrestock(session: Session, data: dict[str, Any]) -> list[dict[str, Any]]:
    """Take the restocked lines out of stock again, as far as they are still on hand (some may
    have been sold since); returns what was taken."""
    restock = get_for_update(session, ReturnRestock, data["return_id"])
    if restock is None:
        return []  # never restocked: nothing to undo
    if restock.unrestocked is not None:
        return list(restock.unrestocked)
    taken = []
    for line in sorted(restock.lines, key=lambda line: str(line["sku"])):
        product = get_for_update(session, Product, str(line["sku"]))
        assert product is not None  # restocked, so it exists; products are never deleted
        quantity = min(int(line["quantity"]), product.stock_on_hand)
        product.stock_on_hand -= quantity
        product.sold += quantity
        taken.append({"sku": line["sku"], "quantity": quantity})
    restock.unrestocked = taken
    restock.unrestocked_at = utcnow()
    return taken
