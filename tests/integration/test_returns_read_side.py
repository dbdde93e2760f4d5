"""The read side follows the return saga: restocked units are on hand again in the product
search (and gone again when a refused refund un-restocks them), revoked points leave the
customer's view, and a rebuild from the events gives the same tables (SQLite and
PostgreSQL)."""

from __future__ import annotations

import httpx
from sqlmodel import Session

from chaos.checks import projections_equal_rebuild
from services.factory import Services
from services.readmodel.models import ProductSearch, UserView
from tests.integration.test_returns import (  # noqa: F401 (fixtures)
    complete_order,
    consumers,
    http,
    inspect,
    points,
    request,
    settle,
    stock,
)


def searched(services: Services) -> dict[str, int]:
    """Per sku, the units the search shows on hand."""
    assert services.projector
    with Session(services.projector.engine) as session:
        return {sku: session.get(ProductSearch, sku).stock_on_hand for sku in ("SKU-A", "SKU-B")}


def viewed_points(services: Services, customer: str = "c-1") -> int:
    assert services.projector
    with Session(services.projector.engine) as session:
        view = session.get(UserView, customer)
        assert view is not None
        return view.loyalty_points


def on_hand(services: Services) -> dict[str, int]:
    return {sku: units for sku, (units, _) in stock(services).items() if sku in ("SKU-A", "SKU-B")}


async def test_the_search_and_the_customers_view_follow_a_return(
    http: httpx.AsyncClient,  # noqa: F811
    services: Services,
    consumers: Services,  # noqa: F811
) -> None:
    order_id = complete_order(services)
    settle(services, consumers)
    assert searched(services) == on_hand(services)
    assert viewed_points(services) == points(services) == 45

    return_id = (await request(http, order_id, {"SKU-A": 2})).json()["return_id"]
    settle(services, consumers)
    assert (await inspect(http, return_id, accepted=True)).status_code == 202
    settle(services, consumers)
    assert searched(services) == on_hand(services)  # the two restocked units are back
    assert viewed_points(services) == points(services) == 25

    refused = complete_order(services, token="tok_norefund")
    settle(services, consumers)
    before = searched(services)
    return_id = (await request(http, refused, {"SKU-B": 1})).json()["return_id"]
    settle(services, consumers)
    await inspect(http, return_id, accepted=True)
    settle(services, consumers)
    assert searched(services) == on_hand(services) == before  # restocked, then un-restocked

    assert services.projector
    check = projections_equal_rebuild(services.projector)
    assert check.violations == []
