"""A customer returns lines of a completed order, and follows the return saga: a choreography,
so its page shows each service's reaction in order and where the chain waits now
(``GET /returns/{id}``). The warehouse's inspection is the operator's form here."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from api.console.common import (
    ConsoleDep,
    FormSession,
    SessionDep,
    go,
    page,
    post_then,
    refused,
)
from api.console.session import PATH

router = APIRouter(prefix=PATH)


@router.post("/orders/{order_id}/returns", response_model=None)
async def request_return(
    request: Request, order_id: UUID, console: ConsoleDep, session: FormSession
) -> HTMLResponse | RedirectResponse:
    """The order page's return form: a quantity per sku (``qty_<sku>``; 0 or empty leaves the
    line out). The API checks the window, what was bought and what was returned already."""
    form = await request.form()
    lines = []
    for name, value in form.multi_items():
        if name.startswith("qty_") and str(value).strip() not in ("", "0"):
            quantity = int(value) if str(value).isdigit() else value  # else the API's 422
            lines.append({"sku": name.removeprefix("qty_"), "quantity": quantity})
    attempt = str(form.get("attempt", ""))
    answer = await console.backend.call(
        request,
        session,
        "POST",
        f"/orders/{order_id}/returns",
        json={"lines": lines, "reason": "returned in the console"},
        headers={"Idempotency-Key": attempt} if attempt else None,
    )
    if not answer.ok:
        return refused(request, console, session, answer, back=f"{PATH}/orders/{order_id}")
    return go(f"{PATH}/returns/{answer.body['return_id']}", console, session)


@router.get("/returns/{return_id}", response_class=HTMLResponse)
async def return_page(
    request: Request, return_id: UUID, console: ConsoleDep, session: SessionDep
) -> HTMLResponse:
    answer = await console.backend.call(request, session, "GET", f"/returns/{return_id}")
    if not answer.ok:
        return refused(request, console, session, answer)
    return page(request, console, session, "return.html", ret=answer.body)


@router.post("/returns/{return_id}/inspection", response_model=None)
async def inspect(
    request: Request,
    return_id: UUID,
    console: ConsoleDep,
    session: FormSession,
    accepted: Annotated[bool, Form()],
    note: Annotated[str, Form()],
) -> HTMLResponse | RedirectResponse:
    path, then = f"/returns/{return_id}/inspection", f"{PATH}/returns/{return_id}"
    body = {"accepted": accepted, "note": note}
    return await post_then(request, console, session, path, body, then)
