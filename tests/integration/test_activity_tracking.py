"""Activity tracking through the real application in this process (httpx's ASGI transport, its
lifespan run), on the real databases (SQLite and PostgreSQL): a customer's search is recorded
with its filters before the answer, an anonymous one is not, a journal a dead process left is
stored at startup, and CLOUDMART_ACTIVITY_TRACKING=false records nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx

from api.main import create_app
from api.tokens import mint
from cloudmart.settings import Settings
from services.activity.actions import Recorded
from services.activity.journal import Journal
from services.activity.models import ActivityType
from services.factory import Services
from tests.unit.api_stub import AUTH_SECRET, OPERATOR_TOKEN


def api_settings(settings: Settings, **changed: object) -> Settings:
    return settings.model_copy(
        update={
            "auth_secret": AUTH_SECRET,
            "operator_token": OPERATOR_TOKEN,
            "require_auth": True,
            "temporal_address": "127.0.0.1:1",  # never reached by these requests
            **changed,
        }
    )


@asynccontextmanager
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    # Settings.model_copy does not validate: the secrets are strings, as the API reads them.
    app = create_app(Settings(**settings.model_dump()))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http,
    ):
        yield http


def as_customer(customer: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(customer, AUTH_SECRET)}"}


async def timeline(http: httpx.AsyncClient, customer: str) -> list[dict]:
    response = await http.get(f"/customers/{customer}/activity", headers=as_customer(customer))
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_a_customers_search_is_recorded_with_its_filters_and_an_anonymous_one_is_not(
    settings: Settings, services: Services
) -> None:
    assert services.projector is not None
    services.projector.sync_catalog()
    async with api(api_settings(settings)) as http:
        found = await http.get(
            "/products",
            params={"category": "widgets", "max_price": 2000, "page": "not a filter"},
            headers={**as_customer("ann"), "X-Request-Id": "search-1"},
        )
        assert found.status_code == 200, found.text
        assert [p["sku"] for p in found.json()] == ["SKU-A"]
        refused = await http.get("/products", params={"min_price": -1}, headers=as_customer("ann"))
        assert refused.status_code == 422  # refused: no action
        as_operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        assert (await http.get("/products", headers=as_operator)).status_code == 200
        (searched,) = await timeline(http, "ann")
        assert searched["type"] == "searched"
        # The request's id: the audit trail's when it gives one (and answers it), else ours.
        assert searched["request_id"] == found.headers.get("X-Request-Id", "search-1")
        assert searched["data"] == {"filters": {"category": "widgets", "max_price": "2000"}}
        again = await http.get(
            "/products",
            params={"category": "widgets"},
            headers={**as_customer("ann"), "X-Request-Id": "search-1"},
        )
        assert again.status_code == 200  # a retry with the same request id: recorded once
        assert len(await timeline(http, "ann")) == 1


async def test_a_journal_a_dead_process_left_is_stored_when_the_api_starts(
    settings: Settings, services: Services, tmp_path: Path
) -> None:
    journal_dir = tmp_path / "journal"
    left = Journal(journal_dir)
    left.open()
    left.append(
        Recorded(
            customer_id="bea",
            type=ActivityType.PRODUCT_VIEWED,
            subject="SKU-B",
            occurred_at=datetime(2026, 12, 1, tzinfo=UTC),
            request_id="before-the-crash",
            key="request:before-the-crash",
        )
    )
    left.close(stored=False)  # as a killed process leaves it: unlocked, not stored
    async with api(api_settings(settings, activity_journal_dir=journal_dir)) as http:
        (viewed,) = await timeline(http, "bea")
        assert (viewed["type"], viewed["subject"]) == ("product_viewed", "SKU-B")
        assert left.path not in set(journal_dir.iterdir())
    assert list(journal_dir.iterdir()) == []  # a clean stop stored everything, and says so


async def test_with_tracking_off_nothing_is_recorded(
    settings: Settings, services: Services, tmp_path: Path
) -> None:
    journal_dir = tmp_path / "journal"
    off = api_settings(settings, activity_tracking=False, activity_journal_dir=journal_dir)
    async with api(off) as http:
        found = await http.get("/products", params={"q": "widget"}, headers=as_customer("cy"))
        assert found.status_code == 200
        assert await timeline(http, "cy") == []
    assert not journal_dir.exists()


async def test_a_customers_view_of_a_product_is_recorded_and_an_unknown_sku_is_a_404(
    settings: Settings, services: Services
) -> None:
    assert services.projector is not None
    services.projector.sync_catalog()
    async with api(api_settings(settings)) as http:
        shown = await http.get("/products/SKU-A", headers=as_customer("ann"))
        assert shown.status_code == 200, shown.text
        assert shown.json()["sku"] == "SKU-A"
        missing = await http.get("/products/NO-SUCH-SKU", headers=as_customer("ann"))
        assert missing.status_code == 404
        assert missing.json()["detail"] == "product NO-SUCH-SKU not found"
        bad = await http.get("/products/%20bad", headers=as_customer("ann"))
        assert bad.status_code == 422
        (viewed,) = await timeline(http, "ann")
        assert (viewed["type"], viewed["subject"]) == ("product_viewed", "SKU-A")
