"""The API's own ASGI middleware: a body size limit and a last resort for errors, both in JSON."""

from __future__ import annotations

import contextlib
import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("cloudmart.api")


class _Responding:
    """Wraps ``send`` to know whether a response has started (after which nothing can change)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        # Equivalent mutant (make mutation): None, as only its truth is ever read.
        self.started = False  # pragma: no mutate

    async def send(self, message: Message) -> None:
        self.started = self.started or message["type"] == "http.response.start"
        await self._send(message)


async def _json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class BodySizeLimit:
    """Answer 413 to a body over ``max_bytes``, whether it declares its length or streams,
    before it is read into memory. (FastAPI's own ``max_body_size`` answers in plain text.)

    A streamed body is counted as the app reads it. The 413 is sent the moment the count passes
    the limit, and whatever the app answers after that is dropped: FastAPI turns any error
    while reading a body into its own 400, so the app's answer cannot be the one that counts."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"request body too large (limit {self.max_bytes} bytes)"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _json(send, 413, detail)
            return

        received = 0
        responding = _Responding(send)
        # Equivalent mutant (make mutation): None, as only its truth is ever read.
        refused = False  # pragma: no mutate

        async def counting_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if not responding.started and not refused:
                        refused = True
                        await _json(send, 413, detail)
                    raise _TooLarge
            return message

        async def unless_refused(message: Message) -> None:
            if not refused:
                await responding.send(message)

        with contextlib.suppress(_TooLarge):  # answered already
            await self.app(scope, counting_receive, unless_refused)


class LastResort:
    """Any exception no handler took becomes a JSON 500, logged once.

    (Starlette's own last resort answers in plain text, or, given a handler for Exception,
    re-raises after answering, and the server then drops the client's connection.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        responding = _Responding(send)
        try:
            await self.app(scope, receive, responding.send)
        except Exception:
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            if not responding.started:
                await _json(send, 500, "internal error; it has been logged")
