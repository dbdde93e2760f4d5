"""Named operators: an operator's token (``role: operator``, ``sub`` the name) passes for an
operator and never for a customer, a customer's never for an operator; the static operator token
acts as ``operator``; every caller carries the name the audit log records, and a check leaves the
caller it resolved, allowed or refused, in the request's state (api/tokens.py, api/auth.py)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi import FastAPI, Request

from api.auth import (
    ANONYMOUS,
    OPERATOR,
    Caller,
    CallerDep,
    Operator,
    bind_request_state,
    get_caller,
    require_operator,
    unbind_request_state,
)
from api.tokens import (
    DEFAULT_OPERATOR_TTL,
    Identity,
    InvalidToken,
    identify,
    looks_like_jwt,
    mint,
    mint_operator,
    verify,
    verify_operator,
)
from cloudmart.settings import Settings
from tests.unit.api_stub import AUTH_SECRET, OPERATOR_TOKEN, bare_app, bearer, client_of, settings
from tests.unit.test_tokens import DAY, SECRET, claims, lifetime, mint_cli, signed

HOUR = 3600

# --- the tokens ---------------------------------------------------------------------------------


def test_an_operators_token_names_the_operator_and_carries_the_role() -> None:
    token = mint_operator("alice", SECRET)
    assert verify_operator(token, SECRET) == "alice"
    assert identify(token, SECRET) == Identity(name="alice", operator=True)
    assert jwt.decode(token, options={"verify_signature": False})["role"] == "operator"
    assert lifetime(token) == DEFAULT_OPERATOR_TTL.total_seconds() == 8 * HOUR
    assert identify(mint("c-42", SECRET), SECRET) == Identity(name="c-42", operator=False)
    assert lifetime(mint_operator("bob", SECRET, ttl=timedelta(minutes=5))) == 300


def test_neither_role_passes_for_the_other() -> None:
    with pytest.raises(InvalidToken, match=r"^an operator's token, not a customer's$"):
        verify(mint_operator("alice", SECRET), SECRET)
    with pytest.raises(InvalidToken, match=r"^a customer's token, not an operator's$"):
        verify_operator(mint("c-42", SECRET), SECRET)
    # A role other than operator is no customer either: refused outright.
    for role in ("admin", "Operator", "", None, ["operator"]):
        with pytest.raises(InvalidToken, match=r"^unknown role \(only operator, or none"):
            identify(signed(claims(role=role)), SECRET)


def test_an_operators_token_is_checked_like_a_customers() -> None:
    now = int(time.time())
    with pytest.raises(InvalidToken, match=r"^expired$"):
        verify_operator(
            mint_operator("alice", SECRET, ttl=timedelta(hours=1), now=now - DAY), SECRET
        )
    with pytest.raises(InvalidToken, match=r"^bad signature$"):
        verify_operator(mint_operator("alice", "x" * 32), SECRET)
    forged = signed(claims(sub="alice", role="operator", exp=now + 300), "x" * 32)
    with pytest.raises(InvalidToken, match=r"^bad signature$"):
        identify(forged, SECRET)


def test_each_role_has_its_own_maximum_lifetime() -> None:
    now = int(time.time())
    day_operator = signed(claims(sub="alice", role="operator", exp=now + DAY))
    with pytest.raises(InvalidToken, match=r"^lives longer than the maximum, 12:00:00 \(exp"):
        verify_operator(day_operator, SECRET)  # the default: 12 hours
    assert verify_operator(day_operator, SECRET, max_lifetime=timedelta(days=1)) == "alice"
    twelve = signed(claims(sub="alice", role="operator", exp=now + 12 * HOUR))
    assert verify_operator(twelve, SECRET) == "alice"
    # A customer's lifetime does not stretch an operator's, nor the reverse.
    with pytest.raises(InvalidToken, match="lives longer than the maximum, 1:00:00"):
        identify(
            twelve,
            SECRET,
            max_lifetime=timedelta(days=30),
            operator_max_lifetime=timedelta(hours=1),
        )
    month = signed(claims(exp=now + 29 * DAY))
    assert identify(month, SECRET, operator_max_lifetime=timedelta(hours=1)).name == "c-42"
    with pytest.raises(InvalidToken, match="lives longer than the maximum, 1:00:00"):
        identify(
            month, SECRET, max_lifetime=timedelta(hours=1), operator_max_lifetime=timedelta(days=30)
        )


@pytest.mark.parametrize(
    "name", ["alice@example.com", "Alice Smith", "", "-x", "a" * 65, "operator"]
)
def test_an_operators_name_is_a_short_handle_never_the_static_tokens(name: str) -> None:
    with pytest.raises(ValueError):
        mint_operator(name, SECRET)
    reason = "is not a name a token may take" if name == "operator" else "no valid operator name"
    with pytest.raises(InvalidToken, match=reason):
        identify(signed(claims(sub=name, role="operator")), SECRET)


def test_handles_of_letters_digits_dots_and_dashes_are_names() -> None:
    for name in ("alice", "j.doe", "ops_2", "A" * 64, "0perator"):
        assert verify_operator(mint_operator(name, SECRET), SECRET) == name


def test_only_three_base64url_segments_look_like_a_jwt() -> None:
    assert looks_like_jwt(mint("c-42", SECRET))
    assert looks_like_jwt("a.b.")
    for token in (OPERATOR_TOKEN, "a.b", "a.b.c.d", "a.b.c ", "é.b.c"):
        assert not looks_like_jwt(token)


# --- python -m api.tokens --operator ------------------------------------------------------------


def test_the_cli_mints_a_named_operators_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args: dict[str, Any] = {"auth_secret": SECRET, "data_dir": tmp_path}
    status, out, err = mint_cli(monkeypatch, capsys, "--operator", "alice", **args)
    assert (status, err, verify_operator(out.strip(), SECRET)) == (0, "", "alice")
    assert lifetime(out.strip()) == 8 * HOUR
    status, out, err = mint_cli(monkeypatch, capsys, "--operator", "alice", "--ttl", "60", **args)
    assert (status, err, lifetime(out.strip())) == (0, "", 60)
    short = {**args, "operator_token_max_lifetime": timedelta(hours=1)}
    status, out, err = mint_cli(monkeypatch, capsys, "--operator", "alice", **short)
    assert (status, err, lifetime(out.strip())) == (0, "", HOUR)  # the maximum, if shorter
    for ttl in ("3601", "0"):
        status, out, err = mint_cli(monkeypatch, capsys, "--operator", "a", "--ttl", ttl, **short)
        assert (status, out) == (2, "")
        assert err == (
            "--ttl must be positive and at most 3600 seconds "
            "(CLOUDMART_OPERATOR_TOKEN_MAX_LIFETIME)\n"
        )
    status, out, err = mint_cli(monkeypatch, capsys, "--operator", "a@b.c", **args)
    assert (status, out) == (2, "")
    assert (
        err
        == "not an operator name: 'a@b.c' (letters, digits and . _ -, up to 64, not 'operator')\n"
    )
    status, out, err = mint_cli(monkeypatch, capsys, "--operator", "alice", data_dir=tmp_path)
    assert (status, out) == (2, "")
    assert err.startswith("no auth secret")


def test_the_cli_takes_a_customer_or_an_operator_never_both(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in ([], ["c-7", "--operator", "alice"]):
        with pytest.raises(SystemExit) as exited:
            from api.tokens import main

            main(argv)
        assert exited.value.code == 2
        assert "give a customer id, or --operator NAME (one of them)" in capsys.readouterr().err


# --- the API's checks ---------------------------------------------------------------------------

ALICE = mint_operator("alice", AUTH_SECRET)
CUSTOMER = mint("c-42", AUTH_SECRET)
EXPIRED_ALICE = mint_operator("alice", AUTH_SECRET, ttl=timedelta(hours=1), now=time.time() - DAY)
NOT_THE_OPERATORS = "an operator action: this token is not the operator's"


def shown(caller: Caller) -> dict[str, Any]:
    return {"customer_id": caller.customer_id, "operator": caller.operator, "name": caller.name}


def checks_app(config: Settings) -> FastAPI:
    """Routes taking api/auth.py's checks, each showing the caller it got and the one left in
    the request's state; the state is bound as api/audit_trail.py binds it."""
    app = bare_app(config)

    @app.middleware("http")
    async def bind(request: Request, call_next: Any) -> Any:
        bound = bind_request_state(request.scope)
        try:
            response = await call_next(request)
        finally:
            unbind_request_state(bound)
        seen = request.scope["state"].get("caller")
        response.headers["x-seen"] = "none" if seen is None else f"{seen.kind}:{seen.name}"
        return response

    @app.post("/operator-action")
    async def operator_action(caller: Operator) -> dict[str, Any]:
        return shown(caller)

    @app.get("/mine")
    async def mine(caller: CallerDep) -> dict[str, Any]:
        return shown(caller)

    return app


async def call(config: Settings, method: str, path: str, token: str | None) -> tuple[int, Any, str]:
    async with client_of(checks_app(config)) as client:
        response = await client.request(method, path, headers=bearer(token) if token else {})
    return response.status_code, response.json(), response.headers["x-seen"]


@pytest.mark.parametrize("require_auth", [False, True], ids=["auth-off", "auth-on"])
async def test_a_named_operator_acts_as_the_operator_under_its_name(require_auth: bool) -> None:
    config = settings(require_auth=require_auth)
    alice = {"customer_id": None, "operator": True, "name": "alice"}
    assert await call(config, "POST", "/operator-action", ALICE) == (200, alice, "operator:alice")
    assert await call(config, "GET", "/mine", ALICE) == (200, alice, "operator:alice")
    static = {"customer_id": None, "operator": True, "name": "operator"}
    assert await call(config, "POST", "/operator-action", OPERATOR_TOKEN) == (
        200,
        static,
        "operator:operator",
    )
    assert await call(config, "GET", "/mine", OPERATOR_TOKEN) == (200, static, "operator:operator")


@pytest.mark.parametrize("require_auth", [False, True], ids=["auth-off", "auth-on"])
async def test_an_operator_action_refuses_a_customers_token_recording_who_it_was(
    require_auth: bool,
) -> None:
    config = settings(require_auth=require_auth)
    status, body, seen = await call(config, "POST", "/operator-action", CUSTOMER)
    assert (status, body, seen) == (403, {"detail": NOT_THE_OPERATORS}, "customer:c-42")
    status, body, seen = await call(config, "POST", "/operator-action", EXPIRED_ALICE)
    assert (status, body, seen) == (
        403,
        {"detail": f"{NOT_THE_OPERATORS} (invalid token: expired)"},
        "none",
    )
    forged = mint_operator("alice", "another-secret-" + "x" * 24)
    status, body, _ = await call(config, "POST", "/operator-action", forged)
    assert (status, body) == (
        403,
        {"detail": f"{NOT_THE_OPERATORS} (invalid token: bad signature)"},
    )
    status, body, seen = await call(config, "POST", "/operator-action", None)
    assert (status, seen) == (401, "none")


async def test_without_an_auth_secret_named_tokens_are_not_operators() -> None:
    config = settings(auth_secret=None)
    assert await call(config, "POST", "/operator-action", ALICE) == (
        403,
        {"detail": NOT_THE_OPERATORS},
        "none",
    )
    anonymous = {"customer_id": None, "operator": False, "name": "anonymous"}
    assert await call(config, "GET", "/mine", ALICE) == (200, anonymous, "anonymous:anonymous")


async def test_without_the_operator_token_configured_named_operators_are_off_too() -> None:
    for require_auth in (False, True):
        config = settings(operator_token=None, require_auth=require_auth)
        status, body, _ = await call(config, "POST", "/operator-action", ALICE)
        assert (status, body["detail"]) == (
            503,
            "operator actions are disabled: no operator token is configured "
            "(set CLOUDMART_OPERATOR_TOKEN)",
        )
    status, body, _ = await call(settings(operator_token=None), "GET", "/mine", ALICE)
    assert (status, body["name"], body["operator"]) == (200, "anonymous", False)


async def test_with_auth_off_a_customers_token_is_anonymous_and_a_bad_operators_ignored() -> None:
    anonymous = {"customer_id": None, "operator": False, "name": "anonymous"}
    for token in (CUSTOMER, EXPIRED_ALICE, "garbage", None):
        assert await call(settings(), "GET", "/mine", token) == (
            200,
            anonymous,
            "anonymous:anonymous",
        )


async def test_with_auth_on_customers_are_named_by_their_id_and_bad_tokens_are_401s() -> None:
    config = settings(require_auth=True)
    customer = {"customer_id": "c-42", "operator": False, "name": "c-42"}
    assert await call(config, "GET", "/mine", CUSTOMER) == (200, customer, "customer:c-42")
    status, body, seen = await call(config, "GET", "/mine", EXPIRED_ALICE)
    assert (status, body, seen) == (401, {"detail": "invalid token: expired"}, "none")
    short = settings(require_auth=True, operator_token_max_lifetime=timedelta(hours=1))
    status, body, _ = await call(short, "GET", "/mine", ALICE)  # 8 hours: too long here
    assert (status, body) == (
        401,
        {"detail": "invalid token: lives longer than the maximum, 1:00:00 (exp - iat)"},
    )


async def test_the_checks_called_outside_a_bound_request_record_nothing() -> None:
    from fastapi.security import HTTPAuthorizationCredentials

    from tests.unit.api_stub import state

    credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=ALICE)
    stub = state(settings())
    assert (await require_operator(credentials, stub)).name == "alice"
    assert (await get_caller(credentials, stub)).name == "alice"


def test_a_callers_name_and_kind() -> None:
    assert (OPERATOR.name, OPERATOR.kind) == ("operator", "operator")
    assert (ANONYMOUS.name, ANONYMOUS.kind) == ("anonymous", "anonymous")
    customer = Caller(customer_id="c-42")
    assert (customer.name, customer.kind) == ("c-42", "customer")
    alice = Caller(customer_id=None, operator=True, name="alice")
    assert (alice.name, alice.kind) == ("alice", "operator")
    assert alice.sees("c-42") and not customer.sees("c-43")


def test_the_cli_says_how_to_mint_an_operators_token(capsys: pytest.CaptureFixture[str]) -> None:
    from api.tokens import main

    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[:2] == [
        "usage: python -m api.tokens [-h] [--ttl TTL] customer_id",
        "       python -m api.tokens [-h] [--ttl TTL] --operator NAME",
    ]
    assert "Or a named operator's, with --operator." in lines
    assert (
        "--operator NAME an operator's token naming NAME, for operator actions, recorded under "
        "that name in the audit log (default --ttl: 28800, or "
        "CLOUDMART_OPERATOR_TOKEN_MAX_LIFETIME if that is shorter)"
    ) in " ".join(out.split())
