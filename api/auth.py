"""Who is calling: the operator (``CLOUDMART_OPERATOR_TOKEN``, or a named operator's token
from ``python -m api.tokens --operator <name>``), a customer (a token from
``python -m api.tokens``), or, while ``CLOUDMART_REQUIRE_AUTH`` is off, anyone.

Routes take what they need as a parameter, as with api/deps.py:

    async def resolve(order_id: UUID, _: Operator) -> ...        # operator only: 401/403/503
    async def mine(order_id: UUID, caller: CallerDep) -> ...     # caller.sees(customer_id)

and declare ``responses=AUTH_RESPONSES`` (api/errors.py) so the schema documents 401/403.

Whoever a check resolves, allowed or refused, is also left in the request's state as
``request.state.caller`` (once api/audit_trail.py has bound it), so the audit log says who acted
without each route passing it on.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, MutableMapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import AppState, State
from api.errors import Forbidden, Unauthorized, Unavailable
from api.tokens import STATIC_OPERATOR, Identity, InvalidToken, identify, looks_like_jwt
from cloudmart.settings import MIN_SECRET_LENGTH, Settings

bearer = HTTPBearer(
    scheme_name="bearer",
    description="The operator token (CLOUDMART_OPERATOR_TOKEN), a named operator's token "
    "(python -m api.tokens --operator <name>), or a customer token "
    "(python -m api.tokens <customer id>).",
    auto_error=False,  # our own 401, in JSON like every other error
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


class AuthConfigError(RuntimeError):
    """Settings the API must not start with; the message says what to set."""


def check_auth_settings(settings: Settings) -> None:
    if settings.require_auth and settings.auth_secret is None:
        raise AuthConfigError(
            "CLOUDMART_REQUIRE_AUTH is on but CLOUDMART_AUTH_SECRET is not set: customer "
            f"tokens could not be checked. Set it (at least {MIN_SECRET_LENGTH} characters, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))')."
        )
    if not (settings.require_auth or settings.allow_open_api or is_loopback(settings.api_host)):
        raise AuthConfigError(
            f"CLOUDMART_API_HOST={settings.api_host!r} listens beyond this machine while "
            "CLOUDMART_REQUIRE_AUTH is off: anyone who reaches it could see and cancel every "
            "customer's orders. Set CLOUDMART_REQUIRE_AUTH=true (with CLOUDMART_AUTH_SECRET), "
            "or listen on 127.0.0.1, or, if a proxy in front of the API checks callers, set "
            "CLOUDMART_ALLOW_OPEN_API=true."
        )


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach an API listening on ``host``: a loopback address
    or ``localhost``. A wildcard (``0.0.0.0``, ``::``, empty), any other address and any other
    name (it may resolve to anything) count as exposed."""
    name = host.strip().removeprefix("[").removesuffix("]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Caller:
    customer_id: str | None
    """The customer a customer token names; None for the operator and anonymous callers."""
    operator: bool = False
    name: str = ""
    """Who acts, as the audit log records it: the operator's name (``operator`` for the static
    token), the customer id, or ``anonymous``. Left empty, it is derived from the others."""

    def __post_init__(self) -> None:
        if not self.name:
            derived = self.customer_id or (STATIC_OPERATOR if self.operator else "anonymous")
            object.__setattr__(self, "name", derived)

    @property
    def kind(self) -> str:
        """``operator``, ``customer`` or ``anonymous``: the audit log's actor kind."""
        if self.operator:
            return "operator"
        return "anonymous" if self.customer_id is None else "customer"

    def sees(self, customer_id: str | None) -> bool:
        """Whether this caller may see (and act on) what belongs to ``customer_id``."""
        return self.customer_id is None or self.customer_id == customer_id


ANONYMOUS = Caller(customer_id=None)
"""Any caller while CLOUDMART_REQUIRE_AUTH is off: sees everything, as before tokens."""
OPERATOR = Caller(customer_id=None, operator=True)
"""The static operator token's caller, named ``operator``."""


def _from(identity: Identity) -> Caller:
    if identity.operator:
        return Caller(customer_id=None, operator=True, name=identity.name)
    return Caller(customer_id=identity.name)


# --- the request's caller, for the audit log --------------------------------------------------

_REQUEST_STATE: ContextVar[MutableMapping[str, Any] | None] = ContextVar(
    "cloudmart_request_state", default=None
)
"""The current request's state (its scope's ``state``), once bound. A context variable rather
than a ``Request`` parameter: the codec server and /healthz call these checks themselves."""


def bind_request_state(scope: MutableMapping[str, Any]) -> Token[MutableMapping[str, Any] | None]:
    """From here on (in this request's context), each check leaves the caller it resolved in
    ``scope["state"]["caller"]``, which the request's ``request.state.caller`` reads."""
    return _REQUEST_STATE.set(scope.setdefault("state", {}))


def unbind_request_state(bound: Token[MutableMapping[str, Any] | None]) -> None:
    _REQUEST_STATE.reset(bound)


def _seen(caller: Caller) -> Caller:
    state = _REQUEST_STATE.get()
    if state is not None:
        state["caller"] = caller
    return caller


def _is_operator_token(token: str, settings: Settings) -> bool:
    if settings.operator_token is None:
        return False
    expected = settings.operator_token.get_secret_value()
    # Bytes: compare_digest refuses str with non-ASCII characters (a header may have them).
    return hmac.compare_digest(token.encode(), expected.encode())


def _identify(token: str, settings: Settings) -> Identity:
    """Whom a JWT names (customer or named operator), each within its maximum lifetime."""
    assert settings.auth_secret is not None  # callers check it first
    return identify(
        token,
        settings.auth_secret.get_secret_value(),
        max_lifetime=settings.customer_token_max_lifetime,
        operator_max_lifetime=settings.operator_token_max_lifetime,
    )


# Coroutines for the reason api/deps.py gives: they never wait (an HMAC, at most).
async def require_operator(credentials: Credentials, state: State) -> Caller:
    return _operator(credentials, state)


NOT_THE_OPERATORS = "an operator action: this token is not the operator's"


def _operator(credentials: HTTPAuthorizationCredentials | None, state: AppState) -> Caller:
    settings = state.settings
    if settings.operator_token is None:
        # Never open: without a configured token, operator actions are off altogether; named
        # operators' tokens included, so this one setting turns them on and off.
        raise Unavailable(
            "operator actions are disabled: no operator token is configured "
            "(set CLOUDMART_OPERATOR_TOKEN)"
        )
    if credentials is None:
        raise Unauthorized("an operator action: send Authorization: Bearer <operator token>")
    token = credentials.credentials
    if _is_operator_token(token, settings):
        return _seen(OPERATOR)
    if settings.auth_secret is None or not looks_like_jwt(token):
        raise Forbidden(NOT_THE_OPERATORS)
    try:
        caller = _seen(_from(_identify(token, settings)))
    except InvalidToken as err:  # an expired operator's token, say: worth saying why
        raise Forbidden(f"{NOT_THE_OPERATORS} (invalid token: {err})") from err
    if not caller.operator:  # a customer's token: who it was is recorded, and refused
        raise Forbidden(NOT_THE_OPERATORS)
    return caller


Operator = Annotated[Caller, Depends(require_operator)]
"""Operator-only routes take a parameter of this type (or ``dependencies=[OPERATOR_ONLY]``)."""
OPERATOR_ONLY = Depends(require_operator)


async def get_caller(credentials: Credentials, state: State) -> Caller:
    return _caller(credentials, state)


def _caller(credentials: HTTPAuthorizationCredentials | None, state: AppState) -> Caller:
    settings = state.settings
    token = credentials.credentials if credentials is not None else None
    if token is not None and _is_operator_token(token, settings):
        return _seen(OPERATOR)
    if not settings.require_auth:
        # Tokens are not checked, but a named operator's is recognised, so the audit log
        # names who acted (a customer's is ignored: anyone may say which customer they are).
        return _seen(_named_operator(token, settings) or ANONYMOUS)
    if token is None:
        raise Unauthorized("a customer token is required: send Authorization: Bearer <token>")
    assert settings.auth_secret is not None  # check_auth_settings refused to start otherwise
    try:
        return _seen(_from(_identify(token, settings)))
    except InvalidToken as err:
        raise Unauthorized(f"invalid token: {err}") from err


def _named_operator(token: str | None, settings: Settings) -> Caller | None:
    """The named operator a valid operator's token names; None for anything else."""
    if token is None or settings.auth_secret is None or settings.operator_token is None:
        return None
    try:
        caller = _from(_identify(token, settings))
    except InvalidToken:
        return None
    return caller if caller.operator else None


CallerDep = Annotated[Caller, Depends(get_caller)]


async def require_operator_when_auth(credentials: Credentials, state: State) -> Caller:
    """Business-wide data (sales stats): the operator's alone when auth is required, open
    otherwise."""
    if not state.settings.require_auth:
        return _caller(credentials, state)
    return _operator(credentials, state)


OperatorWhenAuth = Annotated[Caller, Depends(require_operator_when_auth)]


def document_optional_auth(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """While CLOUDMART_REQUIRE_AUTH is off, say so in the schema: a customer endpoint's token is
    optional there (``security: [{}, {bearer: []}]``), an operator action's never."""
    optional = {
        (route.path_format, method.lower())
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and _calls(route.dependant, CUSTOMER_CHECKS)
        for method in route.methods
    }
    build = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            schema = build()
            for path, operations in schema["paths"].items():
                for method, operation in operations.items():
                    if (path, method) in optional:
                        security = operation.get(
                            "security",
                            # Equivalent mutant (make mutation): a route that checks a customer's
                            # token always has a security entry: this default is never used.
                            [],  # pragma: no mutate
                        )
                        operation["security"] = [{}, *security]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


CUSTOMER_CHECKS = (get_caller, require_operator_when_auth)


def _calls(dependant: Dependant, calls: tuple[object, ...]) -> bool:
    return dependant.call in calls or any(_calls(d, calls) for d in dependant.dependencies)
