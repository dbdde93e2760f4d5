"""Customer and operator tokens: JWTs (RFC 7519) naming the customer, or a named operator,
signed with HS256 by ``CLOUDMART_AUTH_SECRET``, made and checked with PyJWT.

    python -m api.tokens <customer id> [--ttl SECONDS]      # or: make token CUSTOMER=<id>
    python -m api.tokens --operator <name> [--ttl SECONDS]  # or: make token OPERATOR=<name>

Claims, all required: ``sub`` (the customer id, or the operator's name), ``aud``
(``cloudmart-api``), ``iat`` and ``exp`` (integers, ``exp`` - ``iat`` at most
``CLOUDMART_CUSTOMER_TOKEN_MAX_LIFETIME``, or ``CLOUDMART_OPERATOR_TOKEN_MAX_LIFETIME`` for an
operator's); ``nbf`` is checked if present. An operator's token also carries ``role:
operator``; a customer's has no ``role``, so neither passes for the other. Only ``HS256`` is
accepted: a token naming another algorithm (``none`` included) is refused before its signature
is looked at.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import re
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import jwt
from pydantic import StringConstraints, TypeAdapter, ValidationError

from cloudmart.contracts.text import CustomerId
from cloudmart.credentials import AUTH_SECRET_FILE, read_secret
from cloudmart.settings import Settings, get_settings

ALGORITHM = "HS256"
AUDIENCE = "cloudmart-api"
"""A token minted for another service with the same secret is not one of ours."""
DEFAULT_TTL = timedelta(hours=24)
DEFAULT_MAX_LIFETIME = Settings.model_fields["customer_token_max_lifetime"].default
OPERATOR_ROLE = "operator"
"""The ``role`` claim of an operator's token; a customer's token has none."""
DEFAULT_OPERATOR_TTL = timedelta(hours=8)
"""A shift: there is no revocation list, so an operator's token is short-lived."""
DEFAULT_OPERATOR_MAX_LIFETIME = Settings.model_fields["operator_token_max_lifetime"].default
STATIC_OPERATOR = "operator"
"""The name the static ``CLOUDMART_OPERATOR_TOKEN`` acts under: no named token may take it."""
MAX_TOKEN_LENGTH = 2048
"""Far above any token minted here; a longer one is refused before it is decoded."""
LEEWAY = timedelta(seconds=30)
"""Clock skew allowed between the machine that minted a token and the API's: on ``iat`` and
``nbf`` in the future, and on ``exp`` in the past."""
_SEGMENTS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
"""Header, claims, signature (empty for ``alg: none``, which PyJWT then refuses by name)."""
_CUSTOMER_ID = TypeAdapter(CustomerId)
OperatorName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
"""A person's short handle (``alice``, ``j.doe``): letters, digits and ``. _ -``, no ``@``, so an
e-mail address does not end up in the audit log as a name."""
_OPERATOR_NAME = TypeAdapter(OperatorName)


class InvalidToken(ValueError):
    """Why a token is refused (said to the client: it names no secret)."""


def mint(
    customer_id: str, secret: str, *, ttl: timedelta = DEFAULT_TTL, now: float | None = None
) -> str:
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": _CUSTOMER_ID.validate_python(customer_id),
        "aud": AUDIENCE,
        "iat": issued,
        "exp": issued + int(ttl.total_seconds()),
    }
    return jwt.encode(
        claims,
        secret,
        # Equivalent mutant (make mutation): without algorithm=, PyJWT signs with HS256 as well.
        algorithm=ALGORITHM,  # pragma: no mutate
    )


def mint_operator(
    name: str, secret: str, *, ttl: timedelta = DEFAULT_OPERATOR_TTL, now: float | None = None
) -> str:
    """A named operator's token: ``sub`` the name, ``role: operator``."""
    operator = _OPERATOR_NAME.validate_python(name)
    if operator == STATIC_OPERATOR:
        raise ValueError(f"{STATIC_OPERATOR!r} is the static operator token's name")
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": operator,
        "role": OPERATOR_ROLE,
        "aud": AUDIENCE,
        "iat": issued,
        "exp": issued + int(ttl.total_seconds()),
    }
    return jwt.encode(
        claims,
        secret,
        # Equivalent mutant (make mutation): without algorithm=, PyJWT signs with HS256 as well.
        algorithm=ALGORITHM,  # pragma: no mutate
    )


@dataclass(frozen=True)
class Identity:
    """Whom a valid token names: a customer (by id) or an operator (by name)."""

    name: str
    operator: bool


def verify(token: str, secret: str, *, max_lifetime: timedelta = DEFAULT_MAX_LIFETIME) -> str:
    """The customer id the token names, if it is well-formed, signed with ``secret``, for this
    API, current, lives no longer than ``max_lifetime``, and is a customer's (not an
    operator's)."""
    identity = identify(token, secret, max_lifetime=max_lifetime)
    if identity.operator:
        raise InvalidToken("an operator's token, not a customer's")
    return identity.name


def verify_operator(
    token: str, secret: str, *, max_lifetime: timedelta = DEFAULT_OPERATOR_MAX_LIFETIME
) -> str:
    """The operator's name an operator's token names, checked as ``verify`` checks a
    customer's; a customer's token is refused."""
    identity = identify(token, secret, operator_max_lifetime=max_lifetime)
    if not identity.operator:
        raise InvalidToken("a customer's token, not an operator's")
    return identity.name


def identify(
    token: str,
    secret: str,
    *,
    max_lifetime: timedelta = DEFAULT_MAX_LIFETIME,
    operator_max_lifetime: timedelta = DEFAULT_OPERATOR_MAX_LIFETIME,
) -> Identity:
    """Whom the token names, customer or operator, each bounded by its own maximum lifetime."""
    claims = _claims(token, secret)
    operator = "role" in claims  # a customer's token has no role at all, not even null
    if operator and claims["role"] != OPERATOR_ROLE:
        raise InvalidToken(f"unknown role (only {OPERATOR_ROLE}, or none for a customer)")
    longest = operator_max_lifetime if operator else max_lifetime
    if claims["exp"] - claims["iat"] > longest.total_seconds():
        raise InvalidToken(f"lives longer than the maximum, {longest} (exp - iat)")
    if operator:
        try:
            name = _OPERATOR_NAME.validate_python(claims["sub"])
        except ValidationError:
            raise InvalidToken("no valid operator name (sub)") from None
        if name == STATIC_OPERATOR:
            raise InvalidToken(f"{STATIC_OPERATOR!r} is not a name a token may take (sub)")
        return Identity(name=name, operator=True)
    try:
        return Identity(name=_CUSTOMER_ID.validate_python(claims["sub"]), operator=False)
    except ValidationError:
        raise InvalidToken("no valid customer id (sub)") from None


def _claims(token: str, secret: str) -> dict[str, object]:
    """The claims of a well-formed token signed with ``secret``, for this API, current."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("token too long")
    _check_encoding(token)
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            leeway=LEEWAY,
            options={"require": ["sub", "aud", "iat", "exp"], "strict_aud": True},
        )
    except jwt.InvalidAlgorithmError:
        raise InvalidToken(f"unsupported algorithm (only {ALGORITHM})") from None
    except jwt.InvalidSignatureError:
        raise InvalidToken("bad signature") from None
    except jwt.MissingRequiredClaimError as err:
        raise InvalidToken(f"no {err.claim} claim") from None
    except jwt.InvalidAudienceError:
        raise InvalidToken(f"not for this API (aud must be {AUDIENCE})") from None
    except jwt.ExpiredSignatureError:
        raise InvalidToken("expired") from None
    except jwt.ImmatureSignatureError:
        raise InvalidToken("not valid yet (iat or nbf in the future)") from None
    except jwt.InvalidTokenError:
        raise InvalidToken("malformed") from None
    if any(type(claims[c]) is not int for c in ("iat", "exp", "nbf") if c in claims):
        raise InvalidToken("iat, exp and nbf must be integers (seconds since the epoch)")
    return claims


def looks_like_jwt(token: str) -> bool:
    """Three base64url segments: worth decoding as a JWT (an opaque token is not)."""
    return _SEGMENTS.fullmatch(token) is not None


def _check_encoding(token: str) -> None:
    """Three segments of unpadded base64url, the signature in its one canonical spelling.
    PyJWT's decoding is lenient: it skips characters outside the alphabet (``sig!!``) and
    accepts padding (``sig=``) and spare bits, so one signature had many spellings."""
    if not _SEGMENTS.fullmatch(token):
        raise InvalidToken("not a JWT (three base64url segments, unpadded)")
    signature = token.rsplit(".", 1)[1]
    # Equivalent mutant (make mutation): +len pads with more "=", which decoding ignores.
    padding = -len(signature) % 4  # pragma: no mutate
    try:
        raw = base64.urlsafe_b64decode(signature + "=" * padding)
    except (binascii.Error, ValueError):
        raise InvalidToken("signature is not base64url") from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != signature:
        raise InvalidToken("signature is not base64url in its canonical form")


def signing_secret(settings: Settings) -> str | None:
    """The API's secret: ``CLOUDMART_AUTH_SECRET``, or the one `make up` keeps in the data
    directory."""
    if settings.auth_secret is not None:
        return settings.auth_secret.get_secret_value()
    return read_secret(Path(settings.data_dir) / AUTH_SECRET_FILE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m api.tokens",
        usage="python -m api.tokens [-h] [--ttl TTL] customer_id\n"
        "       python -m api.tokens [-h] [--ttl TTL] --operator NAME",
        description="Mint a customer's bearer token.\nOr a named operator's, with --operator.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("customer_id", nargs="?")
    parser.add_argument(
        "--ttl",
        type=int,
        help=f"seconds until it expires (default: {int(DEFAULT_TTL.total_seconds())}, or "
        "CLOUDMART_CUSTOMER_TOKEN_MAX_LIFETIME if that is shorter)",
    )
    parser.add_argument(
        "--operator",
        metavar="NAME",
        help="an operator's token naming NAME, for operator actions, recorded under that name "
        f"in the audit log (default --ttl: {int(DEFAULT_OPERATOR_TTL.total_seconds())}, or "
        "CLOUDMART_OPERATOR_TOKEN_MAX_LIFETIME if that is shorter)",
    )
    args = parser.parse_args(argv)
    if (args.customer_id is None) == (args.operator is None):
        parser.error("give a customer id, or --operator NAME (one of them)")
    settings = get_settings()
    secret = signing_secret(settings)
    if secret is None:
        print(
            "no auth secret: set CLOUDMART_AUTH_SECRET to the API's, or run `make up` once "
            "(it keeps one in the data directory)",
            file=sys.stderr,
        )
        return 2
    if args.operator is not None:
        return _mint_operator(args.operator, args.ttl, secret, settings)
    longest = settings.customer_token_max_lifetime
    ttl = min(DEFAULT_TTL, longest) if args.ttl is None else timedelta(seconds=args.ttl)
    if not timedelta(0) < ttl <= longest:
        # The API would refuse a longer one: better said now than at the first request.
        print(
            f"--ttl must be positive and at most {int(longest.total_seconds())} seconds "
            "(CLOUDMART_CUSTOMER_TOKEN_MAX_LIFETIME)",
            file=sys.stderr,
        )
        return 2
    try:
        print(mint(args.customer_id, secret, ttl=ttl))
    except ValidationError:
        print(f"not a customer id: {args.customer_id!r}", file=sys.stderr)
        return 2
    return 0


def _mint_operator(name: str, seconds: int | None, secret: str, settings: Settings) -> int:
    longest = settings.operator_token_max_lifetime
    ttl = min(DEFAULT_OPERATOR_TTL, longest) if seconds is None else timedelta(seconds=seconds)
    if not timedelta(0) < ttl <= longest:
        print(
            f"--ttl must be positive and at most {int(longest.total_seconds())} seconds "
            "(CLOUDMART_OPERATOR_TOKEN_MAX_LIFETIME)",
            file=sys.stderr,
        )
        return 2
    try:
        print(mint_operator(name, secret, ttl=ttl))
    except ValueError:  # ValidationError included
        print(
            f"not an operator name: {name!r} (letters, digits and . _ -, up to 64, "
            f"not {STATIC_OPERATOR!r})",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
