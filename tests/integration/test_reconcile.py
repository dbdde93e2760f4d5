"""The reconciliation finds every kind of unaccounted stock or money."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import text

from cloudmart.contracts.orders import OrderItem, OrderState, OrderStatus
from cloudmart.contracts.returns import CONSUMERS
from cloudmart.settings import Settings
from services.factory import Services, open_services, prepare
from tests.integration.test_activity_tracking import api, api_settings
from tests.integration.test_returns import ITEMS as RETURNABLE
from tests.integration.test_returns import complete_order, inspect, request, settle
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


# --- returns (docs/returns.md): restocks, return refunds and the provider's refunds -----------


@pytest.fixture
def consumers(settings: Settings, services: Services) -> Iterator[Services]:
    hosted = open_services(settings, CONSUMERS)
    for consumer in hosted.consumers:
        prepare(consumer, settings)
    yield hosted
    hosted.dispose()


@pytest.fixture
async def http(settings: Settings, services: Services) -> AsyncIterator[httpx.AsyncClient]:
    async with api(api_settings(settings)) as client:
        yield client


async def returned(
    http: httpx.AsyncClient,
    services: Services,
    consumers: Services,
    lines: dict[str, int],
    *,
    accepted: bool = True,
    token: str = "tok_ok",
) -> tuple[OrderState, str]:
    """A completed (and shipped) order with these lines returned, the chain run to its end."""
    assert services.shipping
    order_id = complete_order(services, token=token)
    services.shipping.create(order_id, address())
    settle(services, consumers)
    response = await request(http, order_id, lines)
    assert response.status_code == 201, response.text
    return_id = response.json()["return_id"]
    settle(services, consumers)
    assert (await inspect(http, return_id, accepted)).status_code == 202
    settle(services, consumers)
    completed = OrderState(
        order_id=order_id,
        customer_id="c-1",
        status=OrderStatus.COMPLETED,
        items=RETURNABLE,
        total_cents=4500,
        created_at=NOW,
        updated_at=NOW,
    )
    return completed, return_id


async def test_books_with_returns_in_them_reconcile(
    http: httpx.AsyncClient, services: Services, consumers: Services
) -> None:
    """A part returned and refunded, a return rejected, a refund refused for good (taken out of
    stock again): every unit and cent is still accounted for, the returns' among them."""
    part, _ = await returned(http, services, consumers, {"SKU-A": 1, "SKU-B": 1})
    rejected, _ = await returned(http, services, consumers, {"SKU-A": 2}, accepted=False)
    refused, _ = await returned(http, services, consumers, {"SKU-B": 1}, token="tok_norefund")
    books, found = reconcile_services(services, [part, rejected, refused])
    assert found == []
    assert (books.charged_cents, books.refunded_cents) == (3 * 4500, 0)
    assert (books.returned_cents, books.units_returned, books.units_sold) == (3500, 2, 9)


async def test_a_return_missing_from_one_book_is_reported_by_name(
    http: httpx.AsyncClient, services: Services, consumers: Services
) -> None:
    order, return_id = await returned(http, services, consumers, {"SKU-A": 1})
    assert problems(services, [order]) == []
    assert services.payment and services.inventory
    sql(services.payment.engine, "DELETE FROM return_refunds")  # the refund row, underneath
    found = problems(services, [order])
    assert f"return {return_id} of order {order.order_id}: restocked, not refunded" in found
    assert f"provider refunded 1000 for return {return_id}; we have no refund 0" in found
    assert (
        "charged 4500 - refunded 0 - refunded for returns 0 != completed orders 4500"
        " - returned 1000" in found
    )

    sql(services.inventory.engine, "DELETE FROM return_restocks")  # and now the restock too
    found = problems(services, [order])
    assert "SKU-A: sold 1 != committed lines 2 - returned 0" in found
    assert "provider captured 4500 - refunded 1000 != completed orders 4500 - returned 0" in found


async def test_a_refund_beyond_the_restocked_lines_or_the_charge_is_reported(
    http: httpx.AsyncClient, services: Services, consumers: Services
) -> None:
    order, return_id = await returned(http, services, consumers, {"SKU-B": 1})
    assert services.payment
    sql(services.payment.engine, "UPDATE return_refunds SET amount_cents = 5000")
    found = problems(services, [order])
    assert f"return {return_id}: refunded 5000, its restocked lines cost 2500" in found
    assert f"order {order.order_id}: refunded 5000 for returns > charged 4500" in found
    assert f"provider refunded 2500 for return {return_id}; we have REFUNDED 5000" in found
