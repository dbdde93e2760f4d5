"""The operator's page: payment reviews to decide, stuck compensations and stuck steps to retry,
resolve or abort, the read side's lag, sales and failures, and the latest audit entries. Every
action is the API's operator route, called with the signed-in operator's token (so the audit
log and the order's events name that operator)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials

from api.auth import require_operator
from api.console.backend import ApiAnswer
from api.console.common import (
    Console,
    ConsoleDep,
    FormSession,
    SessionDep,
    app_state,
    go,
    page,
    post_then,
    refused,
)
from api.console.load import MAX_RATE, MAX_SECONDS, MIX
from api.console.session import PATH, Session
from api.errors import ApiError

router = APIRouter(prefix=f"{PATH}/operator")

HERE = "/console/operator"
AUDIT_WINDOW = timedelta(minutes=30)


@router.get("", response_class=HTMLResponse, response_model=None)
async def operator_page(
    request: Request, console: ConsoleDep, session: SessionDep
) -> HTMLResponse | RedirectResponse:
    if not session.operator:
        return go("/console/signin", console, session)

    def get(path: str, **params: Any) -> Any:
        return console.backend.call(request, session, "GET", path, params=params)

    since = (datetime.now(UTC) - AUDIT_WINDOW).isoformat()
    reviews, stuck, stuck_steps, health, stats, audit = await asyncio.gather(
        get("/orders", status="AWAITING_PAYMENT_REVIEW", page_size=50),
        get("/orders", status="COMPENSATION_STUCK", page_size=50),
        get("/orders", status="STEP_STUCK", page_size=50),
        get("/healthz"),
        get("/stats"),
        get("/audit", since=since, limit=500),
    )
    if reviews.status in (401, 403):  # the token has expired or been changed since sign-in
        return refused(request, console, session.signed_out(), reviews, back="/console/signin")
    return page(
        request,
        console,
        session,
        "operator.html",
        reviews=_items(reviews),
        stuck=await _with_state(request, console, session, _items(stuck)),
        stuck_steps=await _with_state(request, console, session, _items(stuck_steps)),
        health=health.body if isinstance(health.body, dict) else None,
        stats=stats.body if stats.ok else None,
        audit=audit.body["entries"][-20:][::-1] if audit.ok else [],
        mix=MIX,
        max_rate=MAX_RATE,
        max_seconds=MAX_SECONDS,
        load=console.load.run,
    )


def _items(answer: ApiAnswer) -> list[dict[str, Any]]:
    return answer.body["items"] if answer.ok else []


async def _with_state(
    request: Request, console: Console, session: Session, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each stuck order with the saga's word on what is stuck (the list's rows do not say)."""
    answers = await asyncio.gather(
        *(
            console.backend.call(request, session, "GET", f"/orders/{row['order_id']}")
            for row in rows
        )
    )
    return [
        {**row, "state": answer.body if answer.ok else None}
        for row, answer in zip(rows, answers, strict=True)
    ]


async def _act(
    request: Request, console: Console, session: Session, path: str, body: dict[str, Any]
) -> HTMLResponse | RedirectResponse:
    return await post_then(request, console, session, path, body, HERE)


@router.post("/orders/{order_id}/review", response_model=None)
async def review(
    request: Request,
    order_id: UUID,
    console: ConsoleDep,
    session: FormSession,
    approved: Annotated[bool, Form()],
) -> HTMLResponse | RedirectResponse:
    path = f"/orders/{order_id}/payment-review"
    return await _act(request, console, session, path, {"approved": approved})


@router.post("/orders/{order_id}/compensation/retry", response_model=None)
async def retry_compensation(
    request: Request, order_id: UUID, console: ConsoleDep, session: FormSession
) -> HTMLResponse | RedirectResponse:
    path = f"/orders/{order_id}/compensation/retry"
    return await _act(request, console, session, path, {})


@router.post("/orders/{order_id}/compensation/resolve", response_model=None)
async def resolve_compensation(
    request: Request,
    order_id: UUID,
    console: ConsoleDep,
    session: FormSession,
    step: Annotated[str, Form()],
    note: Annotated[str, Form()],
) -> HTMLResponse | RedirectResponse:
    path = f"/orders/{order_id}/compensation/resolve"
    return await _act(request, console, session, path, {"step": step, "note": note})


@router.post("/orders/{order_id}/step/retry", response_model=None)
async def retry_step(
    request: Request, order_id: UUID, console: ConsoleDep, session: FormSession
) -> HTMLResponse | RedirectResponse:
    return await _act(request, console, session, f"/orders/{order_id}/step/retry", {})


@router.post("/orders/{order_id}/abort", response_model=None)
async def abort(
    request: Request,
    order_id: UUID,
    console: ConsoleDep,
    session: FormSession,
    reason: Annotated[str, Form()],
) -> HTMLResponse | RedirectResponse:
    path = f"/orders/{order_id}/abort"
    return await _act(request, console, session, path, {"reason": reason})


# --- the load generator ---------------------------------------------------------------------


async def _operator_now(request: Request, session: Session) -> None:
    """The session's token is the operator's still (the API's own check: raises its 401/403/503),
    and the audit log records the action under the operator's name."""
    bearer = HTTPAuthorizationCredentials(scheme="Bearer", credentials=session.bearer or "")
    await require_operator(None if session.bearer is None else bearer, app_state(request))


@router.post("/load", response_model=None)
async def start_load(
    request: Request,
    console: ConsoleDep,
    session: FormSession,
    rate: Annotated[float, Form(gt=0, le=MAX_RATE)],
    seconds: Annotated[int, Form(ge=1, le=MAX_SECONDS)],
    mix_tok_ok: Annotated[int, Form(ge=0, le=100)] = 0,
    mix_tok_decline: Annotated[int, Form(ge=0, le=100)] = 0,
    mix_undeliverable: Annotated[int, Form(ge=0, le=100)] = 0,
    mix_tok_flaky: Annotated[int, Form(ge=0, le=100)] = 0,
    mix_tok_fraud: Annotated[int, Form(ge=0, le=100)] = 0,
) -> HTMLResponse | RedirectResponse:
    """Start a run: ``rate`` orders per second for ``seconds``, mixed by the weights given."""
    try:
        await _operator_now(request, session)
    except ApiError as err:
        answer = ApiAnswer(err.status_code, {"detail": err.detail})
        return refused(request, console, session, answer, back=HERE)
    if console.load.running:
        answer = ApiAnswer(409, {"detail": "a load run is still going: wait for its orders to end"})
        return refused(request, console, session, answer, back=HERE)
    given = {
        "tok_ok": mix_tok_ok,
        "tok_decline": mix_tok_decline,
        "undeliverable": mix_undeliverable,
        "tok_flaky": mix_tok_flaky,
        "tok_fraud": mix_tok_fraud,
    }
    mix = {kind: weight for kind, weight in given.items() if weight}
    if not mix:
        answer = ApiAnswer(422, {"detail": "mix: give at least one outcome a weight above 0"})
        return refused(request, console, session, answer, back=HERE)
    console.load.start(app_state(request), rate, seconds, mix)
    return go(HERE, console, session)


@router.get("/load/live")
async def load_live(request: Request, console: ConsoleDep, session: SessionDep) -> Any:
    """Server-sent events: the current run's figures every second, until its last order ended."""
    try:
        await _operator_now(request, session)
    except ApiError as err:
        return refused(
            request, console, session, ApiAnswer(err.status_code, {"detail": err.detail})
        )

    async def stream() -> AsyncIterator[str]:
        while True:
            run = console.load.run
            figures = run.as_json() if run is not None else None
            yield f"event: load\ndata: {json.dumps(figures)}\n\n"
            if figures is None or figures["done"]:
                return
            await asyncio.sleep(1)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )
