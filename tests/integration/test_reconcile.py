"""The reconciliation finds every kind of unaccounted stock or money."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from cloudmart.contracts.orders import OrderItem, OrderState, OrderStatus
from services.factory import Services
from tests.support import address, reconcile_services

NOW = datetime.now(UTC)


def state(order_id: str, status: OrderStatus, total: int) -> OrderState:
    items = [OrderItem(sku="SKU-A", quantity=2)]
    return OrderState(
        order_id=order_id,
        customer_id="c",
        status=status,
        items=items,
        total_cents=total,
        created_at=NOW,
        updated_at=NOW,
    )


def complete(services: Services, order_id: str) -> OrderState:
    reservation = services.inventory.reserve(order_id, [OrderItem(sku="SKU-A", quantity=2)])
    services.payment.charge(order_id, "c", "tok_ok", reservation.total_cents)
    services.shipping.create(order_id, address())
    services.inventory.commit(order_id)
    return state(order_id, OrderStatus.COMPLETED, reservation.total_cents)


def problems(services: Services, orders: list[OrderState]) -> list[str]:
    return reconcile_services(services, orders)[1]


def sql(engine, statement: str) -> None:
    with engine.begin() as connection:
        connection.execute(text(statement))


def test_consistent_books_reconcile(services: Services) -> None:
    orders = [complete(services, "o-1"), complete(services, "o-2")]
    books, found = reconcile_services(services, orders)
    assert found == []
    assert (books.charged_cents, books.refunded_cents, books.units_sold) == (4000, 0, 4)


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (lambda s: sql(s.shipping.engine, "DELETE FROM shipments"), "has no shipment"),
        (lambda s: sql(s.payment.engine, "UPDATE charges SET amount_cents = 1"), "charged"),
        (
            lambda s: s.inventory.reserve("ghost", [OrderItem(sku="SKU-B", quantity=1)]),
            "unknown order ghost",
        ),
        (
            lambda s: sql(
                s.inventory.engine,
                "UPDATE products SET received = received + 1, stock_on_hand = stock_on_hand + 1"
                " WHERE sku = 'SKU-A'",
            ),
            "initial stock",
        ),
    ],
)
def test_unaccounted_stock_or_money_is_reported(services: Services, corrupt, expected) -> None:
    orders = [complete(services, "o-1")]
    corrupt(services)
    assert any(expected in problem for problem in problems(services, orders))


def test_a_failed_order_that_kept_its_money_or_stock_is_reported(services: Services) -> None:
    reservation = services.inventory.reserve("o-1", [OrderItem(sku="SKU-A", quantity=2)])
    services.payment.charge("o-1", "c", "tok_ok", reservation.total_cents)
    found = problems(services, [state("o-1", OrderStatus.FAILED, reservation.total_cents)])
    assert "order o-1 is FAILED but holds stock" in found
    assert "order o-1 is FAILED; charge is CAPTURED" in found


def test_money_the_provider_took_that_our_books_lack_is_reported(services: Services) -> None:
    orders = [complete(services, "o-1")]
    services.payment.provider.charge(idempotency_key="charge:o-2", token="tok_ok", amount_cents=99)
    found = problems(services, orders)
    assert "provider captured 99 for order o-2; we have no charge" in found
    assert any(p.startswith("provider captured 2099 - refunded 0") for p in found)


def test_a_second_capture_or_an_over_refund_by_the_provider_is_reported(
    services: Services,
) -> None:
    orders = [complete(services, "o-1")]
    assert problems(services, orders) == []
    provider = services.payment.provider
    provider.charge(idempotency_key="charge:o-1:again", token="tok_ok", amount_cents=2000)
    found = problems(services, orders)
    assert "order o-1 was captured more than once by the provider" in found
    reference = services.payment.provider.charge(
        idempotency_key="charge:o-1", token="tok_ok", amount_cents=2000
    ).reference
    sql(
        provider.engine,
        "INSERT INTO provider_refunds (idempotency_key, reference, charge_reference, amount_cents)"
        f" VALUES ('refund:x', 'r-x', '{reference}', 2001)",
    )
    assert f"charge {reference}: refunded 2001 > captured" in problems(services, orders)
