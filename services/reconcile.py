"""Reconcile the three services' books with the orders' outcomes.

Every unit of stock and every cent must be accounted for: this reads each service's own tables
(read-only) and lists every way they disagree with what the sagas report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from pydantic import BaseModel
from sqlalchemy import Engine, text

from cloudmart.contracts.orders import OrderState, OrderStatus
from services.database import read_only
from services.payment.models import AWAITING_PROVIDER


class Books(BaseModel):
    """The totals a reconciliation saw, for reports."""

    orders: dict[str, int]
    charged_cents: int
    refunded_cents: int
    completed_total_cents: int
    units_sold: int


STILL_HOLDING = {"CAPTURED", "IN_REVIEW", *(status.value for status in AWAITING_PROVIDER)}
"""Charge statuses that must not outlive a failed or cancelled order."""


def _against_provider(
    provider: Engine, charges: Mapping[str, tuple[str, int]], completed_total: int
) -> list[str]:
    """What the provider really moved must be what our books say, cent for cent."""
    problems = []
    captured = dict(
        _rows(
            provider,
            "SELECT idempotency_key, amount_cents FROM provider_charges WHERE state = 'captured'",
        )
    )
    refunded = sum(a for (a,) in _rows(provider, "SELECT amount_cents FROM provider_refunds"))
    if sum(captured.values()) - refunded != completed_total:
        problems.append(
            f"provider captured {sum(captured.values())} - refunded {refunded} "
            f"!= completed orders {completed_total}"
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


AREAS = ("stock", "money", "one charge per order", "shipments")
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
    for sku, sold, reserved in _rows(inventory, "SELECT sku, sold, reserved FROM products"):
        if sold != sold_lines[sku]:
            problems.append(f"{sku}: sold {sold} != committed lines {sold_lines[sku]}")
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
    if charged - refunded != completed_total:
        problems.append(
            f"charged {charged} - refunded {refunded} != completed orders {completed_total}"
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
        problems += _against_provider(provider, charges, completed_total)
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

    books = Books(
        orders=dict(Counter(o.status.value for o in by_id.values())),
        charged_cents=charged,
        refunded_cents=refunded,
        completed_total_cents=completed_total,
        units_sold=sum(sold_lines.values()),
    )
    return books, found
