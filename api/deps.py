"""Request dependencies: what each route needs, built once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from temporalio.client import Client

from api.sagas import Sagas
from cloudmart.settings import Settings
from services.customers import CustomersService
from services.event_store.store import EventStore
from services.loyalty.service import LoyaltyService
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
    customers: CustomersService
    """The customers' command side: registrations, profiles, closing and erasing."""
    projector: Projector
    """For operator-requested rebuilds only; the worker's projector follows the events."""
    databases: dict[str, Engine]
    """Every database, for /healthz."""


# The dependencies are coroutines, though they never wait: FastAPI runs a plain function
# dependency in its thread pool, and each such hop cost a POST /orders about a millisecond, three
# times (docs/performance.md). Anything that blocks stays out of them.


async def get_state(request: Request) -> AppState:
    return request.app.state.cloudmart


State = Annotated[AppState, Depends(get_state)]


async def get_sagas(state: State) -> Sagas:
    return state.sagas


SagasDep = Annotated[Sagas, Depends(get_sagas)]


async def get_read(state: State) -> ReadModel:
    return state.read


ReadDep = Annotated[ReadModel, Depends(get_read)]
