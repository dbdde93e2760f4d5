"""The console is a client of the JSON API, in the same process.

Every action a page takes (placing an order, cancelling, approving a payment, resolving a stuck
compensation) goes through the same route a `curl` would, with the visitor's own token: the
same rules, the same error messages, the same audit entries and activity records. No rule is
written twice, and the console can do nothing a caller of the API could not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from starlette.requests import Request
from starlette.types import ASGIApp

from api.console.session import Session

INTERNAL = "http://cloudmart.console"
"""The base URL of the in-process requests (never resolved: the transport is the app itself)."""


@dataclass(frozen=True)
class ApiAnswer:
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def message(self) -> str:
        """What the API said was wrong, as it said it (its JSON ``detail``)."""
        if isinstance(self.body, dict):
            detail = self.body.get("detail")
            if isinstance(detail, str):
                return detail
            if isinstance(detail, list):  # a 422's list of fields, each with its message
                return "; ".join(_field_error(item) for item in detail)
        return f"the API answered {self.status}"


def _field_error(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    where = ".".join(str(part) for part in item.get("loc", ())[1:]) or "request"
    return f"{where}: {item.get('msg', 'invalid')}"


class ConsoleBackend:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def call(
        self,
        request: Request,
        session: Session,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> ApiAnswer:
        """``method path`` on the API as the session's visitor, from the visitor's address (so
        the audit log records where the action came from)."""
        sent = dict(headers or {})
        for forwarded in ("user-agent", "x-request-id"):
            if forwarded in request.headers:
                sent.setdefault(forwarded, request.headers[forwarded])
        client = (request.client.host, request.client.port) if request.client else ("", 0)
        return await self.call_as(
            session.bearer, method, path, json=json, params=params, headers=sent, client=client
        )

    async def call_as(
        self,
        bearer: str | None,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        client: tuple[str, int] = ("127.0.0.1", 0),
    ) -> ApiAnswer:
        """``method path`` with ``bearer`` (None: no token), from ``client``."""
        sent = dict(headers or {})
        if bearer is not None:
            sent["Authorization"] = f"Bearer {bearer}"
        transport = httpx.ASGITransport(app=self._app, client=client)
        # No client timeout: a long poll (?wait=) ends on the API's own bound.
        async with httpx.AsyncClient(transport=transport, base_url=INTERNAL, timeout=None) as http:
            answer = await http.request(method, path, json=json, params=params, headers=sent)
        try:
            body = answer.json()
        except ValueError:
            body = answer.text
        return ApiAnswer(answer.status_code, body)
