"""Request dependencies: what each route needs, built once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from temporalio.client import Client

from api.sagas import Sagas
from cloudmart.settings import Settings
from services.loyalty.service import LoyaltyService
from services.orders.store import EventStore
from services.readmodel.projector import Projector
from services.readmodel.queries import ReadModel


@dataclass
class AppState:
    """What the API holds. Commands go to the sagas through Temporal; reads come from the read
    side's projections, the event store and loyalty's accounts. The one thing it writes itself
    is an operator's rebuild of the projections."""

    settings: Settings
    client: Client
    sagas: Sagas
    read: ReadModel
    events: EventStore
    loyalty: LoyaltyService
    projector: Projector
    """For operator-requested rebuilds only; the worker's projector follows the events."""
    databases: dict[str, Engine]
    """Every database, for /healthz."""


def get_state(request: Request) -> AppState:
    return request.app.state.cloudmart


State = Annotated[AppState, Depends(get_state)]


def get_sagas(request: Request) -> Sagas:
    return get_state(request).sagas


SagasDep = Annotated[Sagas, Depends(get_sagas)]


def get_read(request: Request) -> ReadModel:
    return get_state(request).read


ReadDep = Annotated[ReadModel, Depends(get_read)]
