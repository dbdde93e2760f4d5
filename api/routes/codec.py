"""The codec server: Temporal's remote codec protocol, so that the operator can read a history's
payloads decrypted, in the Web UI or with the ``temporal`` CLI.

``POST /codec/decode`` takes and returns ``{"payloads": [...]}`` with payloads in protobuf's JSON
form (metadata values and data in base64). Only the operator may call it: with the operator token
as a bearer token (the CLI: ``--codec-auth 'Bearer <token>'``), or with the codec session cookie
that ``/codec/session`` sets in a browser, which the Web UI sends when its codec setting "Include
cross-origin credentials" is on (the UI has no way to send our token itself). CORS answers the
configured UI origins (``CLOUDMART_CODEC_CORS_ORIGINS``) only, with credentials allowed.

There is no ``/codec/encode``: the Web UI calls it only to encrypt input a user types into the UI
(start, signal, update), and operator actions go through the API, which checks the operator
token. An open encode would let anyone mint ciphertext the workers accept.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import time
from collections.abc import Sequence
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field, field_validator
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.api.common.v1 import Payload

from api.auth import Credentials, require_operator
from api.deps import State
from api.errors import AUTH_RESPONSES, ApiError, ErrorBody, Unauthorized
from cloudmart.codec import EncryptionCodec, PayloadDecryptionError, is_encrypted
from cloudmart.settings import Settings

PREFIX = "/codec"
DECODE = f"{PREFIX}/decode"
ALLOWED_HEADERS = ("Content-Type", "X-Namespace", "Authorization")
"""What the Web UI sends: the namespace always, a bearer token when it passes the user's."""

SESSION_COOKIE = "cloudmart_codec_session"
SESSION_SECONDS = 12 * 3600
"""A browser's codec session lasts a working day; then the operator signs in again."""

router = APIRouter(prefix=PREFIX, tags=["codec"])

_BASE64 = r"^[A-Za-z0-9+/_-]*={0,2}$"


def _decode_base64(value: str) -> bytes:
    # Protobuf's JSON form accepts the standard and the URL-safe alphabet, padded or not.
    standard = value.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None


class PayloadJSON(BaseModel):
    """A ``temporal.api.common.v1.Payload`` in protobuf's JSON form."""

    metadata: dict[str, str] = Field(default_factory=dict)
    data: str = Field(default="", pattern=_BASE64)

    @field_validator("metadata")
    @classmethod
    def _metadata_is_base64(cls, value: dict[str, str]) -> dict[str, str]:
        for key, encoded in value.items():
            try:
                _decode_base64(encoded)
            except ValueError:
                raise ValueError(f"metadata[{key!r}] is not valid base64") from None
        return value

    @field_validator("data")
    @classmethod
    def _data_is_base64(cls, value: str) -> str:
        _decode_base64(value)
        return value

    def to_proto(self) -> Payload:
        return Payload(
            metadata={key: _decode_base64(value) for key, value in self.metadata.items()},
            data=_decode_base64(self.data),
        )

    @classmethod
    def from_proto(cls, payload: Payload) -> PayloadJSON:
        return cls(
            metadata={
                key: base64.b64encode(value).decode() for key, value in payload.metadata.items()
            },
            data=base64.b64encode(payload.data).decode(),
        )


class Payloads(BaseModel):
    payloads: list[PayloadJSON]


class CodecRefused(ApiError):
    """A payload the codec cannot decrypt (a key id it lacks, or a payload that fails
    authentication); the detail names the payload's key id, never the configured ones."""

    status_code = status.HTTP_400_BAD_REQUEST


# --- who may decode -------------------------------------------------------------------------------


def _session_mac(settings: Settings, expires: int) -> str:
    assert settings.operator_token is not None
    key = settings.operator_token.get_secret_value().encode()
    return hmac.new(key, f"codec-session:{expires}".encode(), hashlib.sha256).hexdigest()


def session_cookie(settings: Settings, now: float | None = None) -> str:
    """``<expiry>.<HMAC of it under the operator token>``: it proves a sign-in with the token
    without being the token (a stolen cookie decodes payloads, approves nothing, and expires),
    and changing the operator token ends every session."""
    expires = int(now if now is not None else time.time()) + SESSION_SECONDS
    return f"{expires}.{_session_mac(settings, expires)}"


def _valid_session(value: str, settings: Settings) -> bool:
    expires, _, mac = value.partition(".")
    if settings.operator_token is None or not expires.isdigit() or int(expires) < time.time():
        return False
    return hmac.compare_digest(mac.encode(), _session_mac(settings, int(expires)).encode())


async def require_codec_reader(request: Request, credentials: Credentials, state: State) -> None:
    """The operator: a valid codec session cookie, or else the operator token as a bearer token
    (api/auth.py's check: 401 without one, 403 for any other token, 503 if none is configured)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if credentials is None and cookie is not None and state.settings.operator_token is not None:
        if _valid_session(cookie, state.settings):
            return
        raise Unauthorized(
            f"the codec session has expired or is no longer valid: sign in again at "
            f"{PREFIX}/session"
        )
    await require_operator(credentials, state)


CodecReader = Annotated[None, Depends(require_codec_reader)]


# --- decode ---------------------------------------------------------------------------------------


def _codec(request: Request) -> EncryptionCodec:
    codec = request.app.state.cloudmart.client.data_converter.payload_codec
    assert isinstance(codec, EncryptionCodec), "the API's client always has the payload codec"
    return codec


def _for_display(codec: EncryptionCodec, payload: Payload) -> Payload:
    # What is not encrypted is shown as it is (search attributes, the SDK's patch markers,
    # which the UI sends along): it is in clear in Temporal already. Unlike a worker, the
    # codec server executes nothing it decodes, so it need not refuse it.
    return codec.decrypt(payload) if is_encrypted(payload) else payload


@router.post(
    "/decode",
    response_model=Payloads,
    responses={400: {"model": ErrorBody}, **AUTH_RESPONSES},
)
async def decode(request: Request, body: Payloads, _: CodecReader) -> Payloads:
    """Decrypt payloads (the operator only); payloads that are not encrypted come back as
    they are."""
    codec = _codec(request)
    payloads: Sequence[Payload] = [payload.to_proto() for payload in body.payloads]
    try:
        done = [_for_display(codec, payload) for payload in payloads]
    except PayloadDecryptionError as err:
        raise CodecRefused(str(err)) from None
    return Payloads(payloads=[PayloadJSON.from_proto(payload) for payload in done])


# --- the browser's sign-in ------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CloudMart codec sign-in</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>Codec server sign-in</h1>
<p>{message}</p>
<form method="post" action="{prefix}/session">
  <label>Operator token <input type="password" name="token" autocomplete="off" required></label>
  <button type="submit">Sign in</button>
</form>
<form method="post" action="{prefix}/session/end"><button type="submit">Sign out</button></form>
<p>Then, in the Temporal Web UI's Codec Server settings: "Use my browser setting", endpoint
<code>{endpoint}</code>, "Include cross-origin credentials" on (docs/security.md).</p>
</body></html>
"""


def _page(request: Request, message: str, status_code: int = 200) -> HTMLResponse:
    endpoint = str(request.base_url).rstrip("/") + PREFIX
    text = _PAGE.format(message=html.escape(message), prefix=PREFIX, endpoint=html.escape(endpoint))
    # The page takes a secret: never framed by another site, never cached.
    headers = {"X-Frame-Options": "DENY", "Cache-Control": "no-store"}
    return HTMLResponse(text, status_code=status_code, headers=headers)


@router.get("/session", response_class=HTMLResponse, include_in_schema=False)
async def session_page(request: Request) -> HTMLResponse:
    return _page(request, "Sign in with the operator token to let this browser's Web UI decode.")


_JSON_ERRORS: dict[int | str, dict[str, object]] = {
    # An HTML route's errors are still JSON: said explicitly, or FastAPI documents them as HTML.
    code: {key: value for key, value in spec.items() if key != "model"}
    | {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    for code, spec in AUTH_RESPONSES.items()
}


@router.post(
    "/session",
    response_class=HTMLResponse,
    responses=_JSON_ERRORS,
    summary="Sign a browser in to the codec server",
)
async def sign_in(request: Request, credentials: Credentials, state: State) -> HTMLResponse:
    """The operator token, from the sign-in form (``token=``) or as a bearer token, buys an
    HttpOnly, SameSite=Strict cookie for ``/codec`` that ``/codec/decode`` accepts."""
    if credentials is None:
        form = parse_qs((await request.body()).decode(errors="replace"))
        token = (form.get("token") or [""])[0].strip()
        if token:
            credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
    await require_operator(credentials, state)  # 401/403/503 as for every operator action
    response = _page(request, "Signed in for 12 hours: the Web UI in this browser can decode.")
    response.set_cookie(
        SESSION_COOKIE,
        session_cookie(state.settings),
        max_age=SESSION_SECONDS,
        path=PREFIX,
        httponly=True,  # no script, the UI's included, can read it
        samesite="strict",  # sent from the same site only (localhost:8233 → localhost:8000)
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/session/end", response_class=HTMLResponse, summary="Sign a browser out")
async def sign_out(request: Request) -> HTMLResponse:
    response = _page(request, "Signed out.")
    response.delete_cookie(SESSION_COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response


class CodecCORS:
    """CORS for ``/codec/decode`` only, with credentials (the session cookie): the rest of the
    API, the sign-in included, is not for scripts on other origins."""

    def __init__(self, app: ASGIApp, *, origins: Sequence[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,  # exact origins: credentials are never allowed for "*"
            allow_methods=("POST",),
            allow_headers=ALLOWED_HEADERS,
            allow_credentials=True,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == DECODE:
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
