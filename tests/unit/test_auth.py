"""Who may call what (api/auth.py), in this process: the operator's token on operator actions,
customer tokens on customer endpoints when CLOUDMART_REQUIRE_AUTH is on, business-wide data for
the operator alone when it is; every refusal a JSON body with the status the docs give
(docs/security.md). tests/system/api/test_auth.py runs the same rules against a real stack."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.auth import (
    ANONYMOUS,
    OPERATOR,
    OPERATOR_ONLY,
    AuthConfigError,
    Caller,
    CallerDep,
    Operator,
    OperatorWhenAuth,
    check_auth_settings,
)
from api.tokens import mint
from cloudmart.settings import Settings
from tests.unit.api_stub import (
    AUTH_SECRET,
    OPERATOR_TOKEN,
    bare_app,
    bearer,
    client_of,
    real_app,
    settings,
)

CUSTOMER = mint("c-42", AUTH_SECRET)
FOREIGN = mint("c-42", "another-secret-" + "x" * 24)
EXPIRED = mint("c-42", AUTH_SECRET, ttl=timedelta(minutes=5), now=0)

OPERATOR_ACTION_401 = "an operator action: send Authorization: Bearer <operator token>"
OPERATOR_ACTION_403 = "an operator action: this token is not the operator's"
OPERATOR_ACTIONS_OFF = (
    "operator actions are disabled: no operator token is configured (set CLOUDMART_OPERATOR_TOKEN)"
)
CUSTOMER_TOKEN_REQUIRED = "a customer token is required: send Authorization: Bearer <token>"


def shown(caller: Caller) -> dict[str, Any]:
    return {"customer_id": caller.customer_id, "operator": caller.operator}


def auth_app(config: Settings) -> FastAPI:
    """Routes that take each of api/auth.py's dependencies and show the caller they got."""
    app = bare_app(config)

    @app.post("/operator-action")
    async def operator_action(caller: Operator) -> dict[str, Any]:
        return shown(caller)

    @app.post("/operator-dependency", dependencies=[OPERATOR_ONLY])
    async def operator_dependency() -> dict[str, Any]:
        return {"done": True}

    @app.get("/customers/{customer_id}")
    async def customer_data(customer_id: str, caller: CallerDep) -> dict[str, Any]:
        return {**shown(caller), "sees": caller.sees(customer_id)}

    @app.get("/stats")
    async def stats(caller: OperatorWhenAuth) -> dict[str, Any]:
        return shown(caller)

    return app


async def call(config: Settings, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with client_of(auth_app(config)) as client:
        return await client.request(method, path, **kwargs)


def assert_refused(response: httpx.Response, status: int, detail: str) -> None:
    assert (response.status_code, response.json()) == (status, {"detail": detail})
    assert response.headers["content-type"] == "application/json"
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    else:
        assert "www-authenticate" not in response.headers


# --- operator actions -------------------------------------------------------------------------

NOT_THE_OPERATOR = {
    "another token": bearer("x" * 40),
    "a customer's token": bearer(CUSTOMER),
    "the token cut short": bearer(OPERATOR_TOKEN[:-1]),
    "the token and more": bearer(OPERATOR_TOKEN + "x"),
    "the token in another case": bearer(OPERATOR_TOKEN.upper()),
    # A header may carry any byte: compared as bytes, never an error.
    "a non-ASCII token": {"Authorization": b"Bearer " + OPERATOR_TOKEN.encode() + b"\xc3\xa9"},
}


@pytest.mark.parametrize("require_auth", [False, True], ids=["auth-off", "auth-on"])
@pytest.mark.parametrize("path", ["/operator-action", "/operator-dependency"])
async def test_operator_actions_take_the_operator_token_alone(
    path: str, require_auth: bool
) -> None:
    config = settings(require_auth=require_auth)
    assert_refused(await call(config, "POST", path), 401, OPERATOR_ACTION_401)
    # Another scheme is no bearer token at all, even with the operator's token in it.
    basic = {"Authorization": f"Basic {OPERATOR_TOKEN}"}
    assert_refused(await call(config, "POST", path, headers=basic), 401, OPERATOR_ACTION_401)
    for headers in NOT_THE_OPERATOR.values():
        assert_refused(await call(config, "POST", path, headers=headers), 403, OPERATOR_ACTION_403)

    allowed = await call(config, "POST", path, headers=bearer(OPERATOR_TOKEN))
    assert allowed.status_code == 200
    if path == "/operator-action":
        assert allowed.json() == {"customer_id": None, "operator": True}


@pytest.mark.parametrize("require_auth", [False, True], ids=["auth-off", "auth-on"])
async def test_without_a_configured_operator_token_operator_actions_are_off(
    require_auth: bool,
) -> None:
    config = settings(operator_token=None, require_auth=require_auth)
    for headers in ({}, bearer(OPERATOR_TOKEN), bearer(CUSTOMER), bearer("")):
        response = await call(config, "POST", "/operator-action", headers=headers)
        assert_refused(response, 503, OPERATOR_ACTIONS_OFF)


# --- customer endpoints -----------------------------------------------------------------------


async def test_with_customer_auth_off_anyone_sees_everything_and_tokens_are_not_checked() -> None:
    config = settings(require_auth=False, auth_secret=None)
    for headers in ({}, bearer("garbage"), bearer(CUSTOMER), bearer(EXPIRED)):
        response = await call(config, "GET", "/customers/c-43", headers=headers)
        assert response.status_code == 200
        assert response.json() == {"customer_id": None, "operator": False, "sees": True}
    operator = await call(config, "GET", "/customers/c-43", headers=bearer(OPERATOR_TOKEN))
    assert operator.json() == {"customer_id": None, "operator": True, "sees": True}


async def test_with_customer_auth_on_a_customer_token_sees_its_own_customer_only() -> None:
    config = settings(require_auth=True)
    for customer_id, sees in (("c-42", True), ("c-43", False)):
        response = await call(config, "GET", f"/customers/{customer_id}", headers=bearer(CUSTOMER))
        assert response.status_code == 200
        assert response.json() == {"customer_id": "c-42", "operator": False, "sees": sees}
    operator = await call(config, "GET", "/customers/c-43", headers=bearer(OPERATOR_TOKEN))
    assert operator.json() == {"customer_id": None, "operator": True, "sees": True}


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, CUSTOMER_TOKEN_REQUIRED),
        ({"Authorization": f"Basic {CUSTOMER}"}, CUSTOMER_TOKEN_REQUIRED),
        (bearer(EXPIRED), "invalid token: expired"),
        (bearer(FOREIGN), "invalid token: bad signature"),
        (bearer("garbage"), "invalid token: not a JWT (three base64url segments, unpadded)"),
        (
            bearer(OPERATOR_TOKEN + "x"),
            "invalid token: not a JWT (three base64url segments, unpadded)",
        ),
    ],
    ids=["none", "basic", "expired", "forged", "garbage", "almost-the-operator"],
)
async def test_with_customer_auth_on_no_valid_token_is_a_401(
    headers: dict[str, str], detail: str
) -> None:
    response = await call(settings(require_auth=True), "GET", "/customers/c-42", headers=headers)
    assert_refused(response, 401, detail)


async def test_the_configured_maximum_lifetime_bounds_customer_tokens() -> None:
    config = settings(require_auth=True, customer_token_max_lifetime=timedelta(hours=1))
    hour = mint("c-42", AUTH_SECRET, ttl=timedelta(hours=1))
    response = await call(config, "GET", "/customers/c-42", headers=bearer(hour))
    assert response.json() == {"customer_id": "c-42", "operator": False, "sees": True}
    longer = mint("c-42", AUTH_SECRET, ttl=timedelta(hours=1, seconds=1))
    response = await call(config, "GET", "/customers/c-42", headers=bearer(longer))
    assert_refused(
        response, 401, "invalid token: lives longer than the maximum, 1:00:00 (exp - iat)"
    )


def test_a_caller_sees_what_is_theirs() -> None:
    customer = Caller(customer_id="c-42")
    assert customer.sees("c-42")
    assert not customer.sees("c-43")
    assert not customer.sees(None)
    assert not customer.operator
    for everyone in (ANONYMOUS, OPERATOR):
        assert everyone.sees("c-42") and everyone.sees(None)
    assert OPERATOR.operator and not ANONYMOUS.operator


# --- business-wide data -----------------------------------------------------------------------


async def test_business_wide_data_is_open_with_customer_auth_off() -> None:
    for config in (settings(), settings(operator_token=None)):
        for headers in ({}, bearer(CUSTOMER), bearer("garbage")):
            response = await call(config, "GET", "/stats", headers=headers)
            assert response.json() == {"customer_id": None, "operator": False}
    operator = await call(settings(), "GET", "/stats", headers=bearer(OPERATOR_TOKEN))
    assert operator.json() == {"customer_id": None, "operator": True}


async def test_business_wide_data_is_the_operators_alone_with_customer_auth_on() -> None:
    config = settings(require_auth=True)
    assert_refused(await call(config, "GET", "/stats"), 401, OPERATOR_ACTION_401)
    response = await call(config, "GET", "/stats", headers=bearer(CUSTOMER))
    assert_refused(response, 403, OPERATOR_ACTION_403)
    operator = await call(config, "GET", "/stats", headers=bearer(OPERATOR_TOKEN))
    assert operator.json() == {"customer_id": None, "operator": True}
    off = settings(require_auth=True, operator_token=None)
    response = await call(off, "GET", "/stats", headers=bearer(CUSTOMER))
    assert_refused(response, 503, OPERATOR_ACTIONS_OFF)


# --- the real application ---------------------------------------------------------------------


async def test_the_apis_operator_actions_refuse_whoever_is_not_the_operator() -> None:
    config = settings(require_auth=True)
    async with client_of(real_app(config)) as client:
        for path in (
            "/projections/rebuild",
            f"/orders/{'0' * 8}-0000-0000-0000-{'0' * 12}/compensation/retry",
        ):
            assert_refused(await client.post(path), 401, OPERATOR_ACTION_401)
            response = await client.post(path, headers=bearer(CUSTOMER))
            assert_refused(response, 403, OPERATOR_ACTION_403)
        response = await client.get("/stats", headers=bearer(CUSTOMER))
        assert_refused(response, 403, OPERATOR_ACTION_403)
        response = await client.get("/orders/not-an-id", headers=bearer(EXPIRED))
        assert_refused(response, 401, "invalid token: expired")


async def schema(config: Settings) -> dict[str, Any]:
    async with client_of(real_app(config)) as client:
        first = (await client.get("/openapi.json")).json()
        again = (await client.get("/openapi.json")).json()
    assert again == first  # built once, not marked again on each request
    return first


BEARER = {"bearer": []}


async def test_the_schema_marks_the_token_optional_on_customer_endpoints_while_auth_is_off() -> (
    None
):
    paths = (await schema(settings(require_auth=False)))["paths"]
    for path, method in (
        ("/orders", "get"),
        ("/orders/{order_id}", "get"),
        ("/orders/{order_id}/cancel", "post"),
        ("/customers/{customer_id}/loyalty", "get"),
        ("/stats", "get"),
    ):
        assert paths[path][method]["security"] == [{}, BEARER], (path, method)
    for path in (
        "/orders/{order_id}/payment-review",
        "/orders/{order_id}/compensation/retry",
        "/projections/rebuild",
        "/codec/decode",
    ):
        assert paths[path]["post"]["security"] == [BEARER], path
    assert "security" not in paths["/products"]["get"]


async def test_the_schema_requires_the_token_everywhere_while_auth_is_on() -> None:
    config = settings(require_auth=True, api_host="0.0.0.0")
    paths = (await schema(config))["paths"]
    for path, method in (("/orders", "get"), ("/stats", "get"), ("/projections/rebuild", "post")):
        assert paths[path][method]["security"] == [BEARER], (path, method)


@pytest.mark.parametrize("require_auth", [False, True])
async def test_the_schema_marks_the_token_optional_on_placing_an_order(require_auth: bool) -> None:
    """A guest checkout needs no token, whether or not customers' orders need theirs."""
    config = settings(require_auth=require_auth)
    security = (await schema(config))["paths"]["/orders"]["post"]["security"]
    assert sorted(security, key=len) == [{}, BEARER]


# --- settings the API refuses to start with ---------------------------------------------------


def test_customer_auth_without_a_secret_is_refused_saying_what_to_set() -> None:
    with pytest.raises(AuthConfigError) as refused:
        check_auth_settings(Settings(require_auth=True, auth_secret=None))
    assert str(refused.value) == (
        "CLOUDMART_REQUIRE_AUTH is on but CLOUDMART_AUTH_SECRET is not set: customer tokens "
        "could not be checked. Set it (at least 32 characters, e.g. python -c 'import secrets; "
        "print(secrets.token_urlsafe(32))')."
    )


def test_an_open_api_beyond_loopback_is_refused_saying_what_to_set() -> None:
    with pytest.raises(AuthConfigError) as refused:
        check_auth_settings(Settings(api_host="0.0.0.0"))
    assert str(refused.value) == (
        "CLOUDMART_API_HOST='0.0.0.0' listens beyond this machine while CLOUDMART_REQUIRE_AUTH "
        "is off: anyone who reaches it could see and cancel every customer's orders. Set "
        "CLOUDMART_REQUIRE_AUTH=true (with CLOUDMART_AUTH_SECRET), or listen on 127.0.0.1, or, "
        "if a proxy in front of the API checks callers, set CLOUDMART_ALLOW_OPEN_API=true."
    )
