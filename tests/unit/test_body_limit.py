"""The API's own middleware (api/middleware.py), driven as ASGI applications: the body size limit
(a JSON 413 whether the body declares its length or streams, sent once, the app's own answer
dropped) and the last resort for errors (a JSON 500, logged once)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.middleware import BodySizeLimit, LastResort
from tests.unit.api_stub import client_of, real_app, settings

LIMIT = 100
TOO_LARGE = {"detail": f"request body too large (limit {LIMIT} bytes)"}


def http_scope(headers: dict[bytes, bytes] | None = None, kind: str = "http") -> Scope:
    return {
        "type": kind,
        "method": "POST",
        "path": "/upload",
        "headers": list((headers or {}).items()),
    }


def chunks_of(*bodies: bytes) -> list[Message]:
    return [
        {"type": "http.request", "body": body, "more_body": i < len(bodies) - 1}
        for i, body in enumerate(bodies)
    ]


async def run(app: ASGIApp, scope: Scope, messages: list[Message]) -> list[Message]:
    """Run ``app`` on ``messages`` (then a disconnect); what it sent."""
    pending = list(messages)
    sent: list[Message] = []

    async def receive() -> Message:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def answer(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def read_all(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the whole body and answers how long it was."""
    await answer(send, 200, str(len(await read_all(receive))).encode())


def never_called(scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
    raise AssertionError("the app was called")


def forgiving(reads: int) -> ASGIApp:
    """As FastAPI does: an error while reading the body becomes the app's own 400 (here after
    trying ``reads`` times)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        for _ in range(reads):
            try:
                await read_all(receive)
            except Exception:
                continue
        await answer(send, 400, b"the app's own answer")

    return app


def response(sent: list[Message]) -> tuple[int, dict[bytes, bytes], bytes]:
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1, sent
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return starts[0]["status"], dict(starts[0]["headers"]), body


def assert_too_large(sent: list[Message]) -> None:
    status, headers, body = response(sent)
    assert status == 413
    assert json.loads(body) == TOO_LARGE
    assert headers == {b"content-type": b"application/json", b"content-length": b"%d" % len(body)}


# --- declared lengths -------------------------------------------------------------------------


async def test_a_declared_length_over_the_limit_is_refused_before_the_app_runs() -> None:
    scope = http_scope({b"content-length": b"%d" % (LIMIT + 1)})
    sent = await run(BodySizeLimit(never_called, LIMIT), scope, chunks_of(b"x" * (LIMIT + 1)))
    assert_too_large(sent)


async def test_a_body_of_exactly_the_limit_passes() -> None:
    scope = http_scope({b"content-length": b"%d" % LIMIT})
    sent = await run(BodySizeLimit(echo, LIMIT), scope, chunks_of(b"x" * LIMIT))
    assert response(sent) == (200, {}, b"%d" % LIMIT)


@pytest.mark.parametrize("declared", [b"10", b"-1", b"1e9", b"lots"])
async def test_a_declared_length_is_not_taken_on_trust(declared: bytes) -> None:
    """A small, negative or unreadable Content-Length: the body is counted all the same."""
    scope = http_scope({b"content-length": declared})
    sent = await run(BodySizeLimit(echo, LIMIT), scope, chunks_of(b"x" * 60, b"x" * 41))
    assert_too_large(sent)


# --- streamed bodies --------------------------------------------------------------------------


async def test_a_streamed_body_is_counted_across_its_chunks() -> None:
    sent = await run(BodySizeLimit(echo, LIMIT), http_scope(), chunks_of(b"x" * 60, b"x" * 41))
    assert_too_large(sent)
    sent = await run(BodySizeLimit(echo, LIMIT), http_scope(), chunks_of(*[b"x" * 20] * 5))
    assert response(sent) == (200, {}, b"100")


async def test_the_413_is_the_answer_whatever_the_app_makes_of_the_error() -> None:
    for reads in (1, 2):  # an app that tries again is refused no second time
        sent = await run(
            BodySizeLimit(forgiving(reads), LIMIT), http_scope(), chunks_of(b"x" * 101)
        )
        assert_too_large(sent)
    sent = await run(BodySizeLimit(forgiving(1), LIMIT), http_scope(), chunks_of(b"x" * 99))
    assert response(sent) == (400, {}, b"the app's own answer")


async def test_a_body_read_after_the_answer_started_ends_the_request_quietly() -> None:
    """Once the app's answer has started nothing can replace it: no 413, the app stops."""
    read: list[bytes] = []

    async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        read.append(await read_all(receive))
        await send({"type": "http.response.body", "body": b"never sent"})

    sent = await run(BodySizeLimit(streaming, LIMIT), http_scope(), chunks_of(b"x" * 60, b"x" * 41))
    assert sent == [{"type": "http.response.start", "status": 200, "headers": []}]
    assert read == []


async def test_messages_without_a_body_count_for_nothing() -> None:
    messages = [
        {"type": "http.request", "more_body": True},  # "body" is optional in ASGI
        {"type": "http.request", "body": b"x" * LIMIT, "more_body": False},
    ]
    sent = await run(BodySizeLimit(echo, LIMIT), http_scope(), messages)
    assert response(sent) == (200, {}, b"100")


async def test_other_connections_pass_untouched() -> None:
    seen: list[tuple[Scope, Receive, Send]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope, receive, send))

    async def receive() -> Message:
        return {"type": "websocket.receive", "bytes": b"x" * (LIMIT + 1)}

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent")

    for kind in ("websocket", "lifespan"):
        scope = http_scope({b"content-length": b"%d" % (LIMIT + 1)}, kind=kind)
        for middleware in (BodySizeLimit(app, LIMIT), LastResort(app)):
            seen.clear()
            await middleware(scope, receive, send)
            [(passed_scope, passed_receive, passed_send)] = seen
            assert passed_scope is scope and passed_receive is receive and passed_send is send


# --- the real application ---------------------------------------------------------------------


async def stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def test_the_api_refuses_large_bodies_in_json_declared_or_chunked() -> None:
    config = settings(api_max_body_bytes=LIMIT)
    async with client_of(real_app(config)) as client:
        declared = await client.post("/codec/decode", content=b"x" * (LIMIT + 1))
        chunked = await client.post("/codec/decode", content=stream(b"{" * 60, b"{" * 41))
        small = await client.post("/codec/decode", content=stream(b'{"payloads": []}'))
    for refused in (declared, chunked):
        assert refused.status_code == 413
        assert refused.json() == TOO_LARGE
        assert refused.headers["content-type"] == "application/json"
    assert "content-length" not in chunked.request.headers  # it did stream
    # Under the limit the request goes on to the route (here: no credentials).
    assert small.status_code == 401


# --- the last resort --------------------------------------------------------------------------


def failing(started: bool) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if started:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("boom: secret detail")

    return app


async def test_an_unexpected_error_is_a_json_500_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="cloudmart.api"):
        sent = await run(LastResort(failing(started=False)), http_scope(), [])
    status, headers, body = response(sent)
    assert (status, json.loads(body)) == (500, {"detail": "internal error; it has been logged"})
    assert headers == {b"content-type": b"application/json", b"content-length": b"%d" % len(body)}
    assert b"secret" not in body
    [record] = caplog.records
    assert record.name == "cloudmart.api"
    assert record.getMessage() == "unexpected error on POST /upload"
    assert record.exc_info is not None and "boom" in str(record.exc_info[1])


async def test_an_error_after_the_answer_started_leaves_that_answer_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="cloudmart.api"):
        sent = await run(LastResort(failing(started=True)), http_scope(), [])
    assert sent == [{"type": "http.response.start", "status": 200, "headers": []}]
    assert [r.getMessage() for r in caplog.records] == ["unexpected error on POST /upload"]


async def test_a_body_message_alone_does_not_count_as_an_answer_started() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        raise RuntimeError("boom")

    sent = await run(LastResort(app), http_scope(), [])
    assert [m["type"] for m in sent] == [
        "http.response.body",
        "http.response.start",
        "http.response.body",
    ]
    assert sent[1]["status"] == 500
