"""What every console page shares: its templates, the visitor's session, the form check
against cross-site request forgery, and the way an API refusal is shown."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from api.console.backend import ApiAnswer, ConsoleBackend
from api.console.feed import OrderFeed
from api.console.load import LoadGenerator
from api.console.session import Sealer, Session
from api.deps import AppState
from api.errors import Forbidden

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")  # autoescapes .html

PAYMENT_TOKENS = {
    "tok_ok": "approves",
    "tok_decline": "declined by the issuer",
    "tok_review": "held for a payment review",
    "tok_flaky": "provider down twice, then approves",
    "tok_fraud": "a stolen card (fraud screen refuses)",
    "tok_norefund": "approves, but refunds are refused (a stuck compensation)",
}
DESTINATIONS = {
    "DE": "Germany",
    "FR": "France",
    "NL": "Netherlands",
    "JP": "Japan (we do not deliver: shipping fails)",
}
DEMO_CUSTOMERS = ("c-42", "c-7", "c-1")
"""Whom a visitor may shop as while the API requires no tokens (orders of unregistered ids
are valid, as they always were: docs/customers.md)."""


class Console:
    """The console's parts, kept on the app's state."""

    def __init__(self, sealer: Sealer, backend: ConsoleBackend, feed: OrderFeed) -> None:
        self.sealer = sealer
        self.backend = backend
        self.feed = feed
        self.load = LoadGenerator(backend)


async def get_console(request: Request) -> Console:
    return request.app.state.console


ConsoleDep = Annotated[Console, Depends(get_console)]


def app_state(request: Request) -> AppState:
    return request.app.state.cloudmart


async def get_session(request: Request, console: ConsoleDep) -> Session:
    return console.sealer.load(request)


SessionDep = Annotated[Session, Depends(get_session)]


async def checked_session(
    session: SessionDep, csrf: Annotated[str | None, Form()] = None
) -> Session:
    """The session of a form's sender, once the form proved it came from our own page (it
    carries the token only our pages put in it): 403 otherwise."""
    if not session.checks(csrf):
        raise Forbidden(
            "this form is out of date or did not come from the console: reload the page and "
            "try again"
        )
    return session


FormSession = Annotated[Session, Depends(checked_session)]


def page(
    request: Request,
    console: Console,
    session: Session,
    template: str,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    settings = app_state(request).settings
    response = templates.TemplateResponse(
        request,
        template,
        {
            "session": session,
            "require_auth": settings.require_auth,
            "demo_customers": DEMO_CUSTOMERS,
            **context,
        },
        status_code=status_code,
    )
    response.headers["Cache-Control"] = "no-store"  # pages carry the session's form token
    console.sealer.store(response, session)
    return response


def refused(
    request: Request, console: Console, session: Session, answer: ApiAnswer, **context: Any
) -> HTMLResponse:
    """The API's refusal, on the console's error page, with the API's own status and words."""
    return page(
        request,
        console,
        session,
        "error.html",
        status_code=answer.status,
        message=answer.message,
        **context,
    )


def go(url: str, console: Console, session: Session) -> RedirectResponse:
    """After a form: to the page that shows its effect (303, so a reload does not resend it)."""
    response = RedirectResponse(url, status_code=303)
    console.sealer.store(response, session)
    return response


async def post_then(
    request: Request,
    console: Console,
    session: Session,
    path: str,
    body: dict[str, Any],
    then: str,
) -> HTMLResponse | RedirectResponse:
    """A form's action: ``POST path`` on the API as the visitor, then to ``then`` (303), or the
    API's refusal with a way back to ``then``."""
    answer = await console.backend.call(request, session, "POST", path, json=body)
    if not answer.ok:
        return refused(request, console, session, answer, back=then)
    return go(then, console, session)


def money(cents: int | None) -> str:
    return "—" if cents is None else f"€{cents / 100:,.2f}"


templates.env.filters["money"] = money
