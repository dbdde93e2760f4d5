"""The codec server: Temporal's remote codec protocol, so that the Web UI (and ``temporal`` CLI
users) can show the decrypted payloads of a history to operators.

``POST /codec/encode`` and ``POST /codec/decode`` take and return ``{"payloads": [...]}`` with
payloads in protobuf's JSON form (metadata values and data in base64). The Web UI calls them from
the browser, so they answer CORS requests from the configured UI origins
(``CLOUDMART_CODEC_CORS_ORIGINS``) and allow the ``X-Namespace`` header it sends.

Self-contained: the router, its CORS middleware and its errors live here. It has no access
control of its own yet: whoever reaches it can decrypt what they send, so in production it
belongs behind the operators' SSO or network (a dependency on the router adds one later).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, Field, field_validator
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from api.errors import ApiError, ErrorBody

PREFIX = "/codec"
ALLOWED_HEADERS = ("Content-Type", "X-Namespace", "Authorization")
"""What the Web UI sends: the namespace always, a bearer token when it passes the user's."""

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
    """A payload the codec cannot decode (a key id it lacks, or a payload that fails
    authentication); the detail names the key id."""

    status_code = status.HTTP_400_BAD_REQUEST


def _codec(request: Request) -> PayloadCodec:
    codec = request.app.state.cloudmart.client.data_converter.payload_codec
    assert codec is not None, "the API's Temporal client always has the payload codec"
    return codec


async def _apply(request: Request, body: Payloads, *, encode: bool) -> Payloads:
    codec = _codec(request)
    payloads: Sequence[Payload] = [payload.to_proto() for payload in body.payloads]
    try:
        done = await (codec.encode(payloads) if encode else codec.decode(payloads))
    except ValueError as err:
        raise CodecRefused(str(err)) from None
    return Payloads(payloads=[PayloadJSON.from_proto(payload) for payload in done])


@router.post("/encode", response_model=Payloads)
async def encode(request: Request, body: Payloads) -> Payloads:
    """Encrypt payloads with the newest key (the Web UI uses it for inputs it sends)."""
    return await _apply(request, body, encode=True)


@router.post("/decode", response_model=Payloads, responses={400: {"model": ErrorBody}})
async def decode(request: Request, body: Payloads) -> Payloads:
    """Decrypt payloads; payloads that are not encrypted come back unchanged."""
    return await _apply(request, body, encode=False)


class CodecCORS:
    """CORS for the codec routes only: the rest of the API is not for browsers on other
    origins."""

    def __init__(self, app: ASGIApp, *, origins: Sequence[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=("POST",),
            allow_headers=ALLOWED_HEADERS,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(f"{PREFIX}/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
