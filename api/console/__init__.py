"""The web console under ``/console``: a shop whose checkout reaches every path of the saga, an
order's page that shows its steps and compensations as they run, the customer's account, and the
operator's page. Server-rendered pages (templates/) and one small script of our own
(static/console.js) for live updates; no build step, nothing fetched from elsewhere at run time.

The console is a client of the JSON API in this same process (backend.py): it holds no rule of
its own, so what a page allows is what the API allows its visitor (docs/console.md)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.console import operator, orders, returns, shop, signin
from api.console.backend import ConsoleBackend
from api.console.common import HERE, Console
from api.console.feed import OrderFeed
from api.console.session import PATH, Sealer
from cloudmart.settings import Settings

AUDITED = frozenset({f"{PATH}/signin", f"{PATH}/operator/load"})
"""The console's own actions: signing in (who tried, and the outcome), and starting a load run
(its orders are recorded as their own requests, not who started them)."""


def unaudited(path: str) -> bool:
    """Console forms the audit trail leaves out: each action they take reaches the API as a
    request of its own, which is recorded with the visitor as its caller."""
    return path.startswith(f"{PATH}/") and path not in AUDITED


def install(app: FastAPI, settings: Settings) -> None:
    feed = OrderFeed(lambda order_id: orders.fetch_snapshot(app.state.cloudmart, order_id))
    app.state.console = Console(Sealer(settings), ConsoleBackend(app), feed)
    for module in (shop, orders, returns, signin, operator):
        # Pages, not API: out of the OpenAPI schema (and so out of its fuzzing).
        app.include_router(module.router, include_in_schema=False)
    app.mount(f"{PATH}/static", StaticFiles(directory=HERE / "static"), name="console-static")
