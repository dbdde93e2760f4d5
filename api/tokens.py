"""Customer tokens: JWTs (HS256, RFC 7519) naming the customer, made and checked with the
standard library (``hmac`` + SHA-256), signed with ``CLOUDMART_AUTH_SECRET``.

    python -m api.tokens <customer id> [--ttl SECONDS]    # or: make token CUSTOMER=<id>

Claims: ``sub`` (the customer id), ``iat``, ``exp``. Only ``HS256`` is accepted: a token
naming another algorithm (``none`` included) is refused before its signature is looked at.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import sys
import time
from datetime import timedelta
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from cloudmart.contracts.text import CustomerId
from cloudmart.credentials import AUTH_SECRET_FILE, read_secret
from cloudmart.settings import Settings, get_settings

DEFAULT_TTL = timedelta(hours=24)
MAX_TOKEN_LENGTH = 2048
"""Far above any token minted here; a longer one is refused before it is decoded."""
_HEADER = {"alg": "HS256", "typ": "JWT"}
_CUSTOMER_ID = TypeAdapter(CustomerId)


class InvalidToken(ValueError):
    """Why a token is refused (said to the client: it names no secret)."""


def mint(
    customer_id: str, secret: str, *, ttl: timedelta = DEFAULT_TTL, now: float | None = None
) -> str:
    issued = int(time.time() if now is None else now)
    claims = {"sub": _CUSTOMER_ID.validate_python(customer_id), "iat": issued}
    claims["exp"] = issued + int(ttl.total_seconds())
    signing_input = f"{_encode(_HEADER)}.{_encode(claims)}"
    return f"{signing_input}.{_b64(_sign(signing_input, secret))}"


def verify(token: str, secret: str, *, now: float | None = None) -> str:
    """The customer id the token names, if it is well-formed, signed with ``secret`` and
    unexpired."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("token too long")
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("not a JWT (header.payload.signature)")
    header, payload, signature = parts
    if _decode(header).get("alg") != "HS256":
        raise InvalidToken("unsupported algorithm (only HS256)")
    if not hmac.compare_digest(_unb64(signature), _sign(f"{header}.{payload}", secret)):
        raise InvalidToken("bad signature")
    claims = _decode(payload)
    expires = claims.get("exp")
    if not isinstance(expires, int) or isinstance(expires, bool):
        raise InvalidToken("no expiry")
    if expires <= (time.time() if now is None else now):
        raise InvalidToken("expired")
    try:
        return _CUSTOMER_ID.validate_python(claims.get("sub"))
    except ValidationError:
        raise InvalidToken("no valid customer id (sub)") from None


def _sign(signing_input: str, secret: str) -> bytes:
    return hmac.new(secret.encode(), signing_input.encode("ascii"), hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidToken("not base64url") from None


def _encode(document: dict[str, object]) -> str:
    return _b64(json.dumps(document, separators=(",", ":")).encode())


def _decode(part: str) -> dict[str, object]:
    raw = _unb64(part)
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidToken("not JSON") from None
    if not isinstance(document, dict):
        raise InvalidToken("not a JSON object")
    return document


def signing_secret(settings: Settings) -> str | None:
    """The API's secret: ``CLOUDMART_AUTH_SECRET``, or the one `make up` keeps in the data
    directory."""
    if settings.auth_secret is not None:
        return settings.auth_secret.get_secret_value()
    return read_secret(Path(settings.data_dir) / AUTH_SECRET_FILE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m api.tokens", description="Mint a customer's bearer token."
    )
    parser.add_argument("customer_id")
    parser.add_argument(
        "--ttl",
        type=int,
        default=int(DEFAULT_TTL.total_seconds()),
        help="seconds until it expires (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    secret = signing_secret(get_settings())
    if secret is None:
        print(
            "no auth secret: set CLOUDMART_AUTH_SECRET to the API's, or run `make up` once "
            "(it keeps one in the data directory)",
            file=sys.stderr,
        )
        return 2
    if args.ttl <= 0:
        print("--ttl must be positive", file=sys.stderr)
        return 2
    try:
        print(mint(args.customer_id, secret, ttl=timedelta(seconds=args.ttl)))
    except ValidationError:
        print(f"not a customer id: {args.customer_id!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
