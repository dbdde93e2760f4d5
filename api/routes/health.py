from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

from api.auth import bearer, get_caller
from api.deps import State
from api.errors import ApiError
from services.database import ping

router = APIRouter(tags=["health"])

CHECK_TIMEOUT = timedelta(seconds=2)


class Projection(BaseModel):
    position: int
    """The last event the read side has projected."""
    events_behind: int
    lag_ms: float | None
    """From the last projected event's arrival in the store to its projection."""


class Health(BaseModel):
    status: str
    checks: dict[str, str]
    """"ok", or else what is wrong for the operator's token and "unavailable" for anyone else,
    per dependency."""
    projections: Projection | None = None
    """How far the read side follows the events (absent if the event store or the read side's
    database is unreachable)."""


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
async def healthz(state: State, request: Request) -> JSONResponse:
    """Temporal, each service database and the audit log's reachable: 200, or 503 naming what
    is not. What is wrong (addresses, database errors) only with the operator's token: to
    anyone else, each check is "ok" or "unavailable"."""
    # The audit log's too: while it is down, the operators' actions go unrecorded.
    engines = {**state.databases, "audit": request.app.state.audit.engine}
    names = ["temporal", *(f"{name}_db" for name in engines)]
    results = await asyncio.gather(
        _check_temporal(state),
        *(_check_database(engine) for engine in engines.values()),
    )
    checks = dict(zip(names, results, strict=True))
    projections = None
    if checks["event_store_db"] == checks["readmodel_db"] == "ok":
        try:
            projections = await asyncio.to_thread(_projection, state)
        except Exception as err:  # reachable, but not migrated yet (no worker has run)
            checks["projections"] = f"unavailable: {_first_line(err)}"
    healthy = all(result == "ok" for result in checks.values())
    if not await _is_operator(request, state):
        # The errors name hosts, ports and files: a map for an attacker, of no use to a probe.
        checks = {
            name: "ok" if result == "ok" else "unavailable" for name, result in checks.items()
        }
    body = Health(
        status="ok" if healthy else "unavailable",
        checks=checks,
        projections=projections,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if healthy else 503)


async def _is_operator(request: Request, state: State) -> bool:
    """Whether the request carries the operator's token. Read here rather than declared as a
    dependency, which would mark the route as needing a token in the schema: it needs none."""
    try:
        return (await get_caller(await bearer(request), state)).operator
    except ApiError:  # no token or a bad one while customer tokens are required: anonymous
        return False


def _projection(state: State) -> Projection:
    projected = state.read.status()
    return Projection(
        position=projected.position,
        events_behind=state.events.head() - projected.position,
        lag_ms=projected.lag_ms,
    )


async def _check_temporal(state: State) -> str:
    try:
        await state.client.workflow_service.get_system_info(
            GetSystemInfoRequest(), timeout=CHECK_TIMEOUT
        )
    except Exception as err:  # any failure is the answer
        return f"unreachable at {state.settings.temporal_address}: {_first_line(err)}"
    return "ok"


async def _check_database(engine: object) -> str:
    try:
        await asyncio.wait_for(asyncio.to_thread(ping, engine), CHECK_TIMEOUT.total_seconds())
    except Exception as err:  # any failure is the answer
        return f"unreachable: {_first_line(err)}"
    return "ok"


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
