"""Reconcile the three services' books with the orders' outcomes.

Every unit of stock and every cent must be accounted for: this reads each service's own tables
(read-only) and lists every way they disagree with what the sagas report.

Returns (the choreographed saga, docs/returns.md) are in the books too: inventory's restocks
give units back to stock and say what was returned (priced at what the order paid), payment's
return refunds and the provider's refunds under ``return:<id>`` must pay exactly that back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from pydantic import BaseModel
from sqlalchemy import Engine, select, text

from cloudmart.contracts.orders import OrderState, OrderStatus
from services.database import read_only
from services.inventory.models import ReturnRestock
from services.payment.models import AWAITING_PROVIDER, ReturnRefundStatus


class Books(BaseModel):
    """The totals a reconciliation saw, for reports."""

    orders: dict[str, int]
    charged_cents: int
    refunded_cents: int
    completed_total_cents: int
    units_sold: int
    returned_cents: int = 0
    """Refunded for returns: the value of the units returned to stock (and not taken back)."""
    units_returned: int = 0
    """Units back in stock from returns (net of those taken out again on a refused refund)."""


STILL_HOLDING = {"CAPTURED", "IN_REVIEW", *(status.value for status in AWAITING_PROVIDER)}
"""Charge statuses that must not outlive a failed or cancelled order."""


def _against_provider(
    provider: Engine,
    charges: Mapping[str, tuple[str, int]],
    completed_total: int,
    returned: int,
    return_refunds: Mapping[str, tuple[str, str, int, str | None]],
) -> list[str]:
    """What the provider really moved must be what our books say, cent for cent: captured minus
    refunded is what the completed orders cost less what their returns gave back, and each
    refund of a return (key ``return:<id>``) is one payment booked, of the same amount."""
    problems = []
    captured = dict(
        _rows(
            provider,
            "SELECT idempotency_key, amount_cents FROM provider_charges WHERE state = 'captured'",
        )
    )
    refunds = _rows(
        provider, "SELECT idempotency_key, reference, amount_cents FROM provider_refunds"
    )
    refunded = sum(amount for _, _, amount in refunds)
    if sum(captured.values()) - refunded != completed_total - returned:
        problems.append(
            f"provider captured {sum(captured.values())} - refunded {refunded} "
            f"!= completed orders {completed_total} - returned {returned}"
        )
    refunded_returns = {
        key.removeprefix("return:"): (reference, amount)
        for key, reference, amount in refunds
        if key.startswith("return:")
    }
    for return_id, (reference, amount) in refunded_returns.items():
        order_id, status, booked, booked_reference = return_refunds.get(
            return_id, ("?", "no refund", 0, None)
        )
        if (status, booked, booked_reference) != (ReturnRefundStatus.REFUNDED, amount, reference):
            problems.append(
                f"provider refunded {amount} for return {return_id}; we have {status} {booked}"
            )
    for return_id, (order_id, status, amount, _) in return_refunds.items():
        if status == ReturnRefundStatus.REFUNDED and return_id not in refunded_returns:
            problems.append(
                f"return {return_id} of order {order_id}: refund {amount} booked, "
                "the provider has none"
            )
    for key, amount in captured.items():
        order_id = key.removeprefix("charge:")
        status, booked = charges.get(order_id, ("no charge", 0))
        if status not in ("CAPTURED", "REFUND_PENDING", "REFUNDED") or booked != amount:
            problems.append(f"provider captured {amount} for order {order_id}; we have {status}")
    return problems


def _charges_per_order(provider: Engine) -> list[str]:
    """The provider captured at most once per order and refunded at most what it captured,
    whatever idempotency keys our side used."""
    problems = []
    captured: Counter[str] = Counter()
    amounts: dict[str, int] = {}
    for key, reference, amount in _rows(
        provider,
        "SELECT idempotency_key, reference, amount_cents FROM provider_charges "
        "WHERE state = 'captured'",
    ):
        order_id = key.split(":")[1] if ":" in key else key
        captured[order_id] += 1
        amounts[reference] = amount
        if captured[order_id] == 2:
            problems.append(f"order {order_id} was captured more than once by the provider")
    refunded: Counter[str] = Counter()
    for reference, amount in _rows(
        provider, "SELECT charge_reference, amount_cents FROM provider_refunds"
    ):
        refunded[reference] += amount
    for reference, amount in refunded.items():
        if amount > amounts.get(reference, 0):
            problems.append(f"charge {reference}: refunded {amount} > captured")
    return problems


def _rows(engine: Engine, sql: str) -> list[tuple]:
    with read_only(engine).connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql))]


def reconcile(
    orders: Iterable[OrderState],
    *,
    inventory: Engine,
    payment: Engine,
    shipping: Engine,
    provider: Engine | None = None,
    initial_stock: Mapping[str, int] | None = None,
) -> tuple[Books, list[str]]:
    """Returns the books and the violations (empty when everything is accounted for)."""
    books, by_area = audit(
        orders,
        inventory=inventory,
        payment=payment,
        shipping=shipping,
        provider=provider,
        initial_stock=initial_stock,
    )
    return books, [problem for problems in by_area.values() for problem in problems]


AREAS = ("stock", "money", "one charge per order", "shipments", "returns")
"""What :func:`audit` reports on, each on its own (the chaos run prints one line per area)."""


def audit(
    orders: Iterable[OrderState],
    *,
    inventory: Engine,
    payment: Engine,
    shipping: Engine,
    provider: Engine | None = None,
    initial_stock: Mapping[str, int] | None = None,
) -> tuple[Books, dict[str, list[str]]]:
    """The books, and the violations per area of :data:`AREAS`."""
    by_id = {o.order_id: o for o in orders}
    completed = {i: o for i, o in by_id.items() if o.status is OrderStatus.COMPLETED}
    ended = {i for i, o in by_id.items() if o.status.is_terminal}
    found: dict[str, list[str]] = {area: [] for area in AREAS}

    # Stock: conserved per sku, never negative, nothing held by an ended order.
    problems = found["stock"]
    for sku, on_hand, reserved, sold, received in _rows(
        inventory, "SELECT sku, stock_on_hand, reserved, sold, received FROM products"
    ):
        if min(on_hand, reserved, sold) < 0:
            problems.append(f"{sku}: negative stock ({on_hand}/{reserved}/{sold})")
        if on_hand + reserved + sold != received:
            problems.append(f"{sku}: {on_hand}+{reserved}+{sold} != received {received}")
        if initial_stock and sku in initial_stock and received != initial_stock[sku]:
            problems.append(f"{sku}: received {received}, initial stock {initial_stock[sku]}")
    sold_lines: Counter[str] = Counter()
    reserved_lines: Counter[str] = Counter()
    for _order, status, sku, quantity in _rows(
        inventory,
        "SELECT r.order_id, r.status, l.sku, l.quantity FROM reservations r "
        "JOIN reservation_lines l ON l.order_id = r.order_id",
    ):
        if status == "COMMITTED":
            sold_lines[sku] += quantity
        if status == "RESERVED":
            reserved_lines[sku] += quantity
    reservations = dict(_rows(inventory, "SELECT order_id, status FROM reservations"))
    for order_id, status in reservations.items():
        if order_id not in by_id:
            problems.append(f"reservation {status} for unknown order {order_id}")
        elif status == "RESERVED" and order_id in ended:
            problems.append(f"order {order_id} is {by_id[order_id].status} but holds stock")
        elif status == "COMMITTED" and order_id not in completed:
            problems.append(f"order {order_id} is {by_id[order_id].status} but its stock is sold")
    for order_id in completed:
        if reservations.get(order_id) != "COMMITTED":
            problems.append(f"completed order {order_id} has no committed reservation")
    restocks = _restocks(inventory)
    back: Counter[str] = Counter()  # units back in stock from returns, per sku
    for _order, lines, unrestocked in restocks.values():
        back.update({sku: quantity for sku, quantity in lines.items()})
        back.subtract({sku: quantity for sku, quantity in (unrestocked or {}).items()})
    for sku, sold, reserved in _rows(inventory, "SELECT sku, sold, reserved FROM products"):
        if sold != sold_lines[sku] - back[sku]:
            problems.append(
                f"{sku}: sold {sold} != committed lines {sold_lines[sku]} - returned {back[sku]}"
            )
        if reserved != reserved_lines[sku]:
            problems.append(f"{sku}: reserved {reserved} != open lines {reserved_lines[sku]}")

    # Money: captured minus refunded is exactly what completed orders cost.
    problems = found["money"]
    charges = {
        order_id: (status, amount)
        for order_id, status, amount in _rows(
            payment, "SELECT order_id, status, amount_cents FROM charges"
        )
    }
    refunded = sum(a for (a,) in _rows(payment, "SELECT amount_cents FROM refunds"))
    charged = sum(a for s, a in charges.values() if s in ("CAPTURED", "REFUNDED"))
    completed_total = sum(o.total_cents or 0 for o in completed.values())
    return_refunds = {
        return_id: (order_id, status, amount, reference)
        for return_id, order_id, status, amount, reference in _rows(
            payment,
            "SELECT return_id, order_id, status, amount_cents, provider_reference "
            "FROM return_refunds",
        )
    }
    refunded_returns = sum(
        amount
        for _, status, amount, _ in return_refunds.values()
        if status == ReturnRefundStatus.REFUNDED
    )
    # What the returns gave back, by inventory's books: the units still restocked, priced at
    # what their order paid for them (payment's refunds must add up to exactly that).
    bought = {
        (order_id, sku): (quantity, price)
        for order_id, sku, quantity, price in _rows(
            inventory, "SELECT order_id, sku, quantity, unit_price_cents FROM reservation_lines"
        )
    }
    returned = sum(
        bought.get((order_id, sku), (0, 0))[1] * quantity
        for order_id, lines, unrestocked in restocks.values()
        if unrestocked is None
        for sku, quantity in lines.items()
    )
    if charged - refunded - refunded_returns != completed_total - returned:
        problems.append(
            f"charged {charged} - refunded {refunded} - refunded for returns {refunded_returns}"
            f" != completed orders {completed_total} - returned {returned}"
        )
    for order_id, (status, amount) in charges.items():
        if order_id not in by_id:
            problems.append(f"charge {status} for unknown order {order_id}")
        elif order_id in completed:
            if (status, amount) != ("CAPTURED", completed[order_id].total_cents):
                problems.append(f"completed order {order_id}: charge {status} {amount}")
        elif order_id in ended and status in STILL_HOLDING:
            problems.append(f"order {order_id} is {by_id[order_id].status}; charge is {status}")
    if provider is not None:
        problems += _against_provider(provider, charges, completed_total, returned, return_refunds)
        found["one charge per order"] += _charges_per_order(provider)

    # Shipping: a live shipment for every completed order and for no other ended order.
    problems = found["shipments"]
    shipments = dict(_rows(shipping, "SELECT order_id, status FROM shipments"))
    for order_id, status in shipments.items():
        if order_id not in by_id:
            problems.append(f"shipment {status} for unknown order {order_id}")
        elif status == "CREATED" and order_id in ended and order_id not in completed:
            problems.append(f"order {order_id} is {by_id[order_id].status} but was shipped")
    for order_id in completed:
        if shipments.get(order_id) != "CREATED":
            problems.append(f"completed order {order_id} has no shipment")

    found["returns"] += _returns(restocks, return_refunds, bought, charges, by_id, set(completed))

    books = Books(
        orders=dict(Counter(o.status.value for o in by_id.values())),
        charged_cents=charged,
        refunded_cents=refunded,
        completed_total_cents=completed_total,
        units_sold=sum(sold_lines.values()),
        returned_cents=refunded_returns,
        units_returned=sum(back.values()),
    )
    return books, found


Restocks = dict[str, tuple[str, dict[str, int], dict[str, int] | None]]
"""return_id: (order_id, {sku: units restocked}, {sku: units taken out again} or None)"""


def _restocks(inventory: Engine) -> Restocks:
    table = ReturnRestock.__table__  # type: ignore[attr-defined]
    statement = select(table.c.return_id, table.c.order_id, table.c.lines, table.c.unrestocked)
    with read_only(inventory).connect() as connection:
        rows = connection.execute(statement).all()

    def units(lines: list[dict] | None) -> dict[str, int] | None:
        if lines is None:
            return None
        per_sku: Counter[str] = Counter()
        for line in lines:
            per_sku[str(line["sku"])] += int(line["quantity"])
        return dict(per_sku)

    return {r.return_id: (r.order_id, units(r.lines) or {}, units(r.unrestocked)) for r in rows}


def _returns(
    restocks: Restocks,
    refunds: Mapping[str, tuple[str, str, int, str | None]],
    bought: Mapping[tuple[str, str], tuple[int, int]],
    charges: Mapping[str, tuple[str, int]],
    by_id: Mapping[str, OrderState],
    completed: set[str],
) -> list[str]:
    """Each return in inventory's and payment's books alike: restocked from a completed order,
    no more than it bought; refunded exactly what was restocked, or refused and taken out of
    stock again; and no order refunded more than it was charged."""
    problems = []
    back: Counter[tuple[str, str]] = Counter()
    for return_id, (order_id, lines, unrestocked) in sorted(restocks.items()):
        if order_id not in completed:
            status = by_id[order_id].status if order_id in by_id else "unknown"
            problems.append(f"return {return_id} restocked order {order_id}, which is {status}")
        for sku, quantity in lines.items():
            back[(order_id, sku)] += quantity
            if unrestocked is not None and unrestocked.get(sku, 0) > quantity:
                problems.append(
                    f"return {return_id}: took {unrestocked[sku]} of {sku} out again, "
                    f"restocked {quantity}"
                )
        value = sum(bought.get((order_id, sku), (0, 0))[1] * q for sku, q in lines.items())
        refund = refunds.get(return_id)
        if refund is None:
            problems.append(f"return {return_id} of order {order_id}: restocked, not refunded")
        elif refund[1] == ReturnRefundStatus.REFUNDED:
            if unrestocked is not None:
                problems.append(f"return {return_id}: refunded, yet taken out of stock again")
            if refund[2] != value:
                problems.append(
                    f"return {return_id}: refunded {refund[2]}, its restocked lines cost {value}"
                )
        elif unrestocked is None:
            problems.append(f"return {return_id}: refund {refund[1]}, still restocked")
    for return_id, (order_id, status, amount, _) in sorted(refunds.items()):
        if return_id not in restocks:
            problems.append(
                f"return {return_id} of order {order_id}: refund {status} {amount}, never restocked"
            )
    for (order_id, sku), units in sorted(back.items()):
        quantity = bought.get((order_id, sku), (0, 0))[0]
        if units > quantity:
            problems.append(f"order {order_id}: {units} of {sku} restocked, {quantity} bought")
    per_order: Counter[str] = Counter()
    for order_id, status, amount, _ in refunds.values():
        if status == ReturnRefundStatus.REFUNDED:
            per_order[order_id] += amount
    for order_id, amount in sorted(per_order.items()):
        charged = charges.get(order_id, ("none", 0))[1]
        if amount > charged:
            problems.append(f"order {order_id}: refunded {amount} for returns > charged {charged}")
    return problems
