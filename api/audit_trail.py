"""The API's compliance audit trail: every state-changing request (POST, PUT, PATCH, DELETE),
answered or refused, is appended to the audit log (services/audit) with who made it, before its
answer leaves. Central, as ASGI middleware, so no route can forget it (docs/audit.md).

Who: the caller api/auth.py resolved for the request, allowed or refused (it leaves it in
``request.state.caller``), else anonymous. What: the method and the route's path template
(``POST /orders/{order_id}/cancel``). Resource: the path up to its last parameter, filled in
(``/orders/3f…``), or where a creation's ``Location`` points; identifiers only, never a body.
Outcome: the status code. Request: an id made here, also sent back as ``X-Request-Id`` and left
in ``request.state.request_id`` for the rest of the API.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import Caller, bind_request_state, unbind_request_state
from services.audit.chain import Action
from services.audit.log import AuditLog

log = logging.getLogger("cloudmart.api")

RECORDED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""State-changing requests. (A POST that changes nothing, a decode, is recorded too: it is an
operator reading decrypted data.)"""
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
"""What a path value must look like to be recorded: an id. No ``@``, so an e-mail address sent
where an id belongs is not written into a log that can never be rewritten."""
NOT_AN_ID = "(not an id)"
UNROUTED = "(no route)"


class AuditTrail:
    """Appends one audit entry per state-changing request, once its status is known and before
    the answer's first byte is sent: a process killed after answering has already recorded it.

    ``audit`` gives the log (None: not recording, as in tests that run the API without its
    databases). An entry that cannot be written (the audit database down) is logged as an error
    and the answer still goes: the action it records has already happened."""

    def __init__(self, app: ASGIApp, audit: Callable[[Scope], AuditLog | None]) -> None:
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        bound = bind_request_state(scope)
        scope["state"]["request_id"] = request_id
        audit = self.audit(scope) if scope["method"] in RECORDED_METHODS else None

        async def answering(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
                if audit is not None:
                    await _record(audit, action_of(scope, message, request_id))
            await send(message)

        try:
            await self.app(scope, receive, answering)
        finally:
            unbind_request_state(bound)


async def _record(audit: AuditLog, action: Action) -> None:
    try:
        await anyio.to_thread.run_sync(audit.append, action)
    except Exception:
        log.exception(
            "audit entry NOT recorded: %s on %s by %s %s, outcome %s, request %s",
            action.action,
            action.resource,
            action.actor_kind,
            action.actor,
            action.outcome,
            action.request_id,
        )


def action_of(scope: Scope, start: Message, request_id: str) -> Action:
    """The audit entry of a request, from its scope (after routing) and its answer's start."""
    caller = scope.get("state", {}).get("caller")
    if not isinstance(caller, Caller):  # refused before any check, or no check at all
        caller = Caller(customer_id=None)
    # No route: refused before routing (no such path, or a 413 on its declared length).
    template = getattr(scope.get("route"), "path", None)
    headers = {name.lower(): value for name, value in start.get("headers", [])}
    location = headers.get(b"location", b"").decode("latin-1") or None
    return Action(
        actor_kind=caller.kind,  # type: ignore[arg-type]
        actor=caller.name,
        action=f"{scope['method']} {template or UNROUTED}",
        resource=resource_of(template, scope.get("path_params", {}), location),
        request_id=request_id,
        outcome=str(start["status"]),
    )


def resource_of(
    template: str | None, params: Mapping[str, Any], location: str | None = None
) -> str | None:
    """What a request acted on, as a path of ids: the route's path up to its last parameter,
    filled in (``/orders/{order_id}/cancel`` → ``/orders/<id>``); for a route without one, the
    created resource its ``Location`` names, else the route's first segment (``/projections``).
    A value that is not an id is recorded as ``(not an id)``."""
    if template is None:
        return None
    parts = template.strip("/").split("/")
    last = max((i for i, part in enumerate(parts) if part.startswith("{")), default=None)
    if last is None:
        if location is not None and location.startswith("/"):
            return "/" + "/".join(_id(part) for part in location.strip("/").split("/"))
        return f"/{parts[0]}"
    filled = [
        _id(params.get(part[1:-1].split(":")[0])) if part.startswith("{") else part
        for part in parts[: last + 1]
    ]
    return "/" + "/".join(filled)


def _id(value: object) -> str:
    text = str(value)
    return text if _ID.fullmatch(text) else NOT_AN_ID
