"""An order, live: its steps and compensations as they happen, its event timeline, a link to its
execution in Temporal's Web UI, and a Cancel button while a cancel is still accepted."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.console.common import (
    Console,
    ConsoleDep,
    FormSession,
    SessionDep,
    app_state,
    page,
    post_then,
    refused,
    templates,
)
from api.console.feed import Snapshot
from api.console.session import PATH, Session
from api.deps import AppState
from services.event_store.aggregate import replay

router = APIRouter(prefix=PATH)

CANCELLABLE = {"PENDING", "RESERVING_INVENTORY", "CHARGING_PAYMENT", "AWAITING_PAYMENT_REVIEW"}
"""Where the page offers Cancel; the saga decides (a refusal is shown as it says it)."""


async def fetch_snapshot(state: AppState, order_id: str) -> Snapshot:
    """The order as the live page shows it: the saga's state (its steps and compensations), or
    the fold of its stored events while the saga cannot be asked; and its stored events."""
    events = await run_in_threadpool(state.events.stream, order_id)
    try:
        order = (await state.sagas.state(order_id)).model_dump(mode="json")
    except Exception:
        if not events:
            raise
        folded = replay(order_id, events)
        order = {
            "order_id": order_id,
            "customer_id": folded.customer_id,
            "status": str(folded.status),
            "total_cents": folded.total_cents,
            "failure": folded.failure.model_dump() if folded.failure else None,
            "steps": [],
            "compensations": [],
            "source": "event_store",
        }
    timeline = [
        {
            "sequence": event.sequence,
            "event_type": event.event_type,
            "occurred_at": event.occurred_at.isoformat(timespec="milliseconds"),
        }
        for event in events
    ]
    return Snapshot(order=order, events=timeline)


def _context(request: Request, snapshot: Snapshot) -> dict[str, Any]:
    settings = app_state(request).settings
    ui = settings.web_ui_url
    order_id = snapshot.order["order_id"]
    return {
        # A return form's key: a resent form (a double click) opens one return, not two.
        "attempt": secrets.token_urlsafe(16),
        "order": snapshot.order,
        "events": snapshot.events,
        "cancellable": snapshot.order["status"] in CANCELLABLE,
        "temporal_url": (
            f"{ui}/namespaces/{settings.temporal_namespace}/workflows/order-{order_id}"
            if ui
            else None
        ),
    }


async def _visible(request: Request, console: Console, session: Session, order_id: UUID):
    """The API's answer to whether this visitor may see the order (its 404 otherwise)."""
    return await console.backend.call(request, session, "GET", f"/orders/{order_id}/events")


@router.get("/orders/{order_id}", response_class=HTMLResponse)
async def order_page(
    request: Request, order_id: UUID, console: ConsoleDep, session: SessionDep
) -> HTMLResponse:
    allowed = await _visible(request, console, session, order_id)
    if not allowed.ok:
        return refused(request, console, session, allowed)
    snapshot = await fetch_snapshot(app_state(request), str(order_id))
    return page(request, console, session, "order.html", **_context(request, snapshot))


@router.get("/orders/{order_id}/live")
async def order_live(
    request: Request, order_id: UUID, console: ConsoleDep, session: SessionDep
) -> Any:
    """Server-sent events: the order's live panel, rendered anew each time it changes (one
    watch per order in this process, whatever the number of pages: api/console/feed.py)."""
    allowed = await _visible(request, console, session, order_id)
    if not allowed.ok:
        return refused(request, console, session, allowed)

    async def stream() -> AsyncIterator[str]:
        async for snapshot in console.feed.follow(str(order_id)):
            html = templates.get_template("_order_live.html").render(
                session=session, **_context(request, snapshot)
            )
            yield "event: order\n" + "".join(f"data: {line}\n" for line in html.splitlines())
            yield "\n"
            if snapshot.ended:
                yield f"event: ended\ndata: {json.dumps(snapshot.order['status'])}\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post("/orders/{order_id}/cancel", response_model=None)
async def cancel(
    request: Request,
    order_id: UUID,
    console: ConsoleDep,
    session: FormSession,
    reason: Annotated[str, Form()] = "cancelled by customer",
) -> HTMLResponse | RedirectResponse:
    path, then = f"/orders/{order_id}/cancel", f"{PATH}/orders/{order_id}"
    return await post_then(request, console, session, path, {"reason": reason}, then)
