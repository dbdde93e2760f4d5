"""The FastAPI application: ``uvicorn --factory api.main:create_app`` or ``python -m api``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import Scope

from api import activity_tracking, console
from api.audit_trail import AuditTrail
from api.auth import check_auth_settings, document_optional_auth
from api.deps import AppState
from api.errors import install_error_handlers
from api.middleware import BodySizeLimit, LastResort
from api.request_metrics import RequestMetrics
from api.routes import (
    audit,
    codec,
    customer_views,
    customers,
    health,
    orders,
    products,
    projections,
    returns,
)
from api.sagas import Sagas
from cloudmart import metrics, tracing
from cloudmart.settings import SERVICES, Settings, get_settings
from cloudmart.temporal import connect
from services.audit.log import AuditLog
from services.customers import CustomersService
from services.customers.sealing import ProfileSealing
from services.database import create_db_engine
from services.event_store.store import EventStore
from services.inventory import InventoryService
from services.loyalty.service import LoyaltyService
from services.readmodel.projector import Projector
from services.readmodel.queries import ReadModel

log = logging.getLogger("cloudmart.api")

API_DATABASES = ("event_store", *SERVICES, "readmodel", "loyalty")
"""The databases the API reads (and checks in /healthz); the provider's is another company's."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    check_auth_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Lazy: the API starts (and answers 503) while Temporal is down, and connects when it is up.
        client = await connect(settings, lazy=True)
        databases = {
            name: create_db_engine(settings.db_url(name), pool_size=2) for name in API_DATABASES
        }
        app.state.cloudmart = AppState(
            settings=settings,
            client=client,
            sagas=Sagas(client, settings),
            read=ReadModel(databases["readmodel"]),
            events=EventStore(databases["event_store"]),
            loyalty=LoyaltyService(databases["loyalty"], EventStore(databases["event_store"])),
            customers=CustomersService(
                databases["customers"], EventStore(databases["event_store"])
            ),
            projector=Projector(
                EventStore(databases["event_store"]),
                databases["readmodel"],
                InventoryService(databases["inventory"]).catalog,
                # A rebuild opens the profiles as the worker's projector does.
                profiles=ProfileSealing(databases["customers"]),
            ),
            databases=databases,
        )
        app.state.audit = AuditLog(create_db_engine(settings.db_url("audit"), pool_size=4))
        await _prepare_audit_log(app.state.audit)
        yield
        await app.state.console.feed.close()
        await app.state.console.load.close()
        for engine in databases.values():
            engine.dispose()
        app.state.audit.engine.dispose()

    app = FastAPI(
        title="CloudMart Sagas",
        version="0.1.0",
        summary="Orders as durable sagas on Temporal over inventory, payment and shipping.",
        lifespan=lifespan,
        telemetry=tracing.fastapi_telemetry(),
    )
    install_error_handlers(app, settings.temporal_address)
    activity_tracking.install(app, settings)  # innermost: records each final answer
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(LastResort)
    # Outside LastResort: even an unexpected error's 500 is recorded, with whoever caused it.
    app.add_middleware(AuditTrail, audit=_audit_log)
    # Outermost but for the metrics: even an error answer to the Web UI carries the CORS headers
    # it needs to read it.
    app.add_middleware(codec.CodecCORS, origins=settings.codec_origins)
    app.add_middleware(RequestMetrics, meter=metrics.meter(settings))  # every answer, counted
    routers = [
        module.router
        for module in (
            orders,
            returns,
            products,
            customers,
            customer_views,
            projections,
            health,
            codec,
        )
    ]
    for router in routers:
        app.include_router(router)
    app.include_router(audit.router)  # operator only: never an optional token
    console.install(app, settings)
    if not settings.require_auth:
        document_optional_auth(app, routers)
    return app


def _audit_log(scope: Scope) -> AuditLog | None:
    if console.unaudited(scope["path"]):
        return None
    return getattr(scope["app"].state, "audit", None)


async def _prepare_audit_log(audit_log: AuditLog) -> None:
    """Migrate the audit database now, so the first request does not wait for it; if it is
    down, the API starts anyway and the first append tries again (and logs what it missed)."""
    try:
        await asyncio.to_thread(audit_log.ensure_schema)
    except SQLAlchemyError as err:
        log.warning("the audit database is not ready; retrying at the first append: %s", err)
