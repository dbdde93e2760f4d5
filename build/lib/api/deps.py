"""Request dependencies: what each route needs, built once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from temporalio.client import Client

from api.sagas import Sagas
from cloudmart.settings import Settings
from services.inventory import InventoryService


@dataclass
class AppState:
    settings: Settings
    client: Client
    sagas: Sagas
    catalog: InventoryService
    """Inventory, read-only here: the API lists products but never writes stock."""
    databases: dict[str, Engine]
    """Each service's database, for /healthz."""


def get_state(request: Request) -> AppState:
    return request.app.state.cloudmart


State = Annotated[AppState, Depends(get_state)]


def get_sagas(request: Request) -> Sagas:
    return get_state(request).sagas


SagasDep = Annotated[Sagas, Depends(get_sagas)]
