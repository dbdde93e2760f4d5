"""Operator actions on the read side."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter
from pydantic import BaseModel

from api.auth import Operator
from api.deps import State
from api.errors import AUTH_RESPONSES

router = APIRouter(prefix="/projections", tags=["operator"], responses=AUTH_RESPONSES)


class Rebuilt(BaseModel):
    events: int
    """How many order events were projected again."""
    position: int
    """The read side's checkpoint after the rebuild."""
    seconds: float


@router.post("/rebuild", response_model=Rebuilt)
async def rebuild_projections(state: State, _: Operator) -> Rebuilt:
    """Throw the projections away and project every order event again, as
    ``make rebuild-projections`` does. Safe while the projector runs: it is one transaction
    (readers see the old tables until it commits; the projector waits, then carries on)."""
    started = time.perf_counter()
    events = await asyncio.to_thread(state.projector.rebuild)
    seconds = time.perf_counter() - started
    position = (await asyncio.to_thread(state.read.status)).position
    return Rebuilt(events=events, position=position, seconds=round(seconds, 3))
