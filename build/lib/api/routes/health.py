from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

from api.deps import State
from services.database import ping

router = APIRouter(tags=["health"])

CHECK_TIMEOUT = timedelta(seconds=2)


class Health(BaseModel):
    status: str
    checks: dict[str, str]
    """"ok", or what is wrong, per dependency."""


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
async def healthz(state: State) -> JSONResponse:
    """Temporal and each service database reachable: 200, or 503 naming what is not."""
    names = ["temporal", *(f"{service}_db" for service in state.databases)]
    results = await asyncio.gather(
        _check_temporal(state),
        *(_check_database(engine) for engine in state.databases.values()),
    )
    checks = dict(zip(names, results, strict=True))
    healthy = all(result == "ok" for result in checks.values())
    body = Health(status="ok" if healthy else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)


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
