"""Signing in to the console with a token: the operator's (or a named operator's), or, while
the API requires tokens, a customer's. The token goes into the sealed session cookie and from
there into the API calls the console makes; it is never put in a URL, a page or a log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials

from api.auth import Caller, get_caller, require_operator
from api.console.common import ConsoleDep, FormSession, SessionDep, app_state, go, page
from api.console.session import PATH
from api.errors import ApiError

router = APIRouter(prefix=PATH)

MAX_TOKEN = 4096


@router.get("/signin", response_class=HTMLResponse)
async def signin_page(request: Request, console: ConsoleDep, session: SessionDep) -> HTMLResponse:
    return page(request, console, session, "signin.html")


@router.post("/signin", response_model=None)
async def sign_in(
    request: Request,
    console: ConsoleDep,
    session: FormSession,
    token: Annotated[str, Form(max_length=MAX_TOKEN)],
) -> HTMLResponse | RedirectResponse:
    """The operator goes to the operator's page, a customer to 'My account'. A token that is
    neither is refused with why (never echoing it)."""
    state = app_state(request)
    credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token.strip())
    try:
        caller: Caller = await require_operator(credentials, state)
    except ApiError as not_operator:
        if not state.settings.require_auth:
            return _refused(request, console, session, not_operator.detail)
        try:
            caller = await get_caller(credentials, state)
        except ApiError as err:
            return _refused(request, console, session, err.detail)
    if caller.operator:
        after = session.signed_in(bearer=credentials.credentials, role="operator", who=caller.name)
        return go("/console/operator", console, after)
    assert caller.customer_id is not None  # require_auth is on: a customer's token
    after = session.signed_in(bearer=credentials.credentials, role="customer", who=caller.name)
    return go("/console/account", console, after)


def _refused(request: Request, console, session, why: str) -> HTMLResponse:  # type: ignore[no-untyped-def]
    return page(request, console, session, "signin.html", status_code=403, message=why)


@router.post("/signout")
async def sign_out(console: ConsoleDep, session: FormSession) -> RedirectResponse:
    return go("/console", console, session.signed_out())
