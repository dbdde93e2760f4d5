"""The operator's page: payment reviews to decide, stuck compensations and stuck steps to retry,
resolve or abort, the read side's lag, sales and failures, and the latest audit entries. Every
action is the API's operator route, called with the signed-in operator's token (so the audit
log and the order's events name that operator)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from api.console.backend import ApiAnswer
from api.console.common import Console, ConsoleDep, FormSession, SessionDep, go, page, refused
from api.console.session import PATH, Session

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
    answer = await console.backend.call(request, session, "POST", path, json=body)
    if not answer.ok:
        return refused(request, console, session, answer, back=HERE)
    return go(HERE, console, session)


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
