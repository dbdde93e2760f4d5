"""The codec server (api/routes/codec.py) in this process, through the real application: only the
operator decodes, with the operator token or a browser's codec session; what cannot be decrypted
is a 400 naming the payload's key id; what is not encrypted comes back as it is; the sign-in
page and its cookie; CORS for the Web UI on /codec/decode alone. tests/system/test_encryption.py
runs it against a real stack and the ``temporal`` CLI."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Mapping
from http.cookies import SimpleCookie
from typing import Any

import httpx
import pytest
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter

import api.routes.codec as codec_routes
from api.tokens import mint
from cloudmart.codec import EncryptionCodec, new_key_entry, parse_payload_keys
from cloudmart.settings import Settings
from tests.support import TEST_PAYLOAD_KEYS
from tests.unit.api_stub import (
    AUTH_SECRET,
    OPERATOR_TOKEN,
    CodecOnlyClient,
    bearer,
    client_of,
    real_app,
    settings,
)

UI = "http://localhost:8233"
COOKIE = "cloudmart_codec_session"
TWELVE_HOURS = 12 * 3600
CODEC = EncryptionCodec(parse_payload_keys(TEST_PAYLOAD_KEYS))
SECRET = b'{"payment_token": "tok_secret_5f1c"}'
CUSTOMER = mint("c-42", AUTH_SECRET)

OPERATOR_ACTION_401 = "an operator action: send Authorization: Bearer <operator token>"
OPERATOR_ACTION_403 = "an operator action: this token is not the operator's"
SESSION_401 = "the codec session has expired or is no longer valid: sign in again at /codec/session"


def codec_settings(**changed: object) -> Settings:
    return settings(codec_cors_origins=UI, **changed)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def as_json(payload: Payload) -> dict[str, Any]:
    """Protobuf's JSON form, as the Web UI and the CLI send it."""
    return {
        "metadata": {key: b64(value) for key, value in payload.metadata.items()},
        "data": b64(payload.data),
    }


def plain(data: bytes = SECRET) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=data)


def sealed(payload: Payload, codec: EncryptionCodec = CODEC) -> Payload:
    return codec.encrypt(payload)


def session_value(token: str, expires: int) -> str:
    """The cookie as docs/security.md describes it: ``<expiry>.<HMAC-SHA256 of it under the
    operator token>``."""
    mac = hmac.new(token.encode(), f"codec-session:{expires}".encode(), hashlib.sha256)
    return f"{expires}.{mac.hexdigest()}"


async def decode(
    config: Settings,
    payloads: list[dict[str, Any]],
    *,
    headers: Mapping[str, str] | None = None,
    cookie: str | None = None,
) -> httpx.Response:
    async with client_of(real_app(config)) as client:
        if cookie is not None:
            client.cookies.set(COOKIE, cookie, path="/codec")
        return await client.post("/codec/decode", json={"payloads": payloads}, headers=headers)


def assert_refused(response: httpx.Response, status: int, detail: str) -> None:
    assert (response.status_code, response.json()) == (status, {"detail": detail})
    assert response.headers["content-type"] == "application/json"


# --- who may decode ---------------------------------------------------------------------------


async def test_the_operator_decodes_and_gets_the_original_payloads() -> None:
    originals = [plain(), plain(b'{"amount": 17998}')]
    response = await decode(
        codec_settings(),
        [as_json(sealed(p)) for p in originals],
        headers=bearer(OPERATOR_TOKEN),
    )
    assert response.status_code == 200
    assert response.json() == {"payloads": [as_json(p) for p in originals]}


@pytest.mark.parametrize("require_auth", [False, True], ids=["auth-off", "auth-on"])
async def test_nobody_else_decodes(require_auth: bool) -> None:
    config = codec_settings(require_auth=require_auth)
    payloads = [as_json(sealed(plain()))]
    assert_refused(await decode(config, payloads), 401, OPERATOR_ACTION_401)
    for token in (CUSTOMER, "garbage", OPERATOR_TOKEN[:-1]):
        response = await decode(config, payloads, headers=bearer(token))
        assert_refused(response, 403, OPERATOR_ACTION_403)
        assert SECRET not in response.content


async def test_without_an_operator_token_nobody_decodes() -> None:
    config = codec_settings(operator_token=None)
    expires = int(time.time()) + 60
    for headers, cookie in (
        (bearer(OPERATOR_TOKEN), None),
        ({}, session_value(OPERATOR_TOKEN, expires)),
        ({}, None),
    ):
        response = await decode(config, [as_json(sealed(plain()))], headers=headers, cookie=cookie)
        assert response.status_code == 503
        assert "no operator token is configured" in response.json()["detail"]


# --- what it decodes --------------------------------------------------------------------------


async def test_a_payload_under_a_key_it_lacks_is_a_400_naming_that_key_alone() -> None:
    foreign = EncryptionCodec(parse_payload_keys(new_key_entry("k-unknown")))
    payloads = [as_json(sealed(plain())), as_json(sealed(plain(), foreign))]
    response = await decode(codec_settings(), payloads, headers=bearer(OPERATOR_TOKEN))
    assert_refused(
        response,
        400,
        "payload encrypted with key id 'k-unknown', which is not configured "
        "(CLOUDMART_PAYLOAD_KEYS)",
    )
    assert "test-1" not in response.text  # the configured key's id stays unsaid


async def test_a_tampered_payload_is_a_400() -> None:
    tampered = as_json(sealed(plain()))
    data = bytearray(base64.b64decode(tampered["data"]))
    data[-1] ^= 1
    tampered["data"] = b64(bytes(data))
    response = await decode(codec_settings(), [tampered], headers=bearer(OPERATOR_TOKEN))
    assert_refused(
        response,
        400,
        "payload encrypted with key id 'test-1' failed authentication (tampered with, or the "
        "key under that id has changed)",
    )


async def test_payloads_that_are_not_encrypted_come_back_as_they_are() -> None:
    """Search attributes and patch markers, which the UI sends along, are in clear anyway."""
    marker = Payload(metadata={"encoding": b"json/plain", "type": b"Keyword"}, data=b'"x"')
    payloads = [as_json(plain()), as_json(marker), {}, as_json(sealed(plain()))]
    response = await decode(codec_settings(), payloads, headers=bearer(OPERATOR_TOKEN))
    assert response.status_code == 200
    empty = {"metadata": {}, "data": ""}
    assert response.json()["payloads"] == [
        as_json(plain()),
        as_json(marker),
        empty,
        as_json(plain()),
    ]


async def test_base64_is_read_in_either_alphabet_padded_or_not() -> None:
    """Protobuf's JSON form allows both alphabets and leaves padding out at will."""
    data = bytes([0xFB, 0xFF, 0xBF, 0xFE])  # "+/+/" and "-_-_" in the two alphabets
    for size in (4, 5, 6):  # padded with "==", "=" and nothing
        value = data + b"\xfb" * (size - 4)
        urlsafe = base64.urlsafe_b64encode(value).decode().rstrip("=")
        payload = {"metadata": {"encoding": "anNvbi9wbGFpbg"}, "data": urlsafe}  # json/plain
        response = await decode(codec_settings(), [payload], headers=bearer(OPERATOR_TOKEN))
        assert response.status_code == 200, response.text
        assert response.json()["payloads"] == [as_json(plain(value))]


@pytest.mark.parametrize(
    ("payload", "where", "message"),
    [
        ({"data": "not base64!"}, "data", f"String should match pattern '{codec_routes._BASE64}'"),
        ({"data": "abcde"}, "data", "Value error, not valid base64"),
        (
            {"metadata": {"encoding": "!!!!"}},
            "metadata",
            "Value error, metadata['encoding'] is not valid base64",
        ),
        (
            {"metadata": {"encoding": "abcde"}},
            "metadata",
            "Value error, metadata['encoding'] is not valid base64",
        ),
    ],
    ids=["data-alphabet", "data-length", "metadata-alphabet", "metadata-length"],
)
async def test_what_is_not_base64_is_a_422(
    payload: dict[str, Any], where: str, message: str
) -> None:
    response = await decode(codec_settings(), [payload], headers=bearer(OPERATOR_TOKEN))
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert (error["loc"], error["msg"]) == (["body", "payloads", 0, where], message)


async def test_an_api_whose_client_lacks_the_codec_refuses_to_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Never a decode that passes ciphertext through as if it were the payload."""
    app = real_app(codec_settings())
    app.state.cloudmart.client = CodecOnlyClient(pydantic_data_converter)
    with caplog.at_level(logging.ERROR, logger="cloudmart.api"):
        async with client_of(app) as client:
            response = await client.post(
                "/codec/decode",
                json={"payloads": [as_json(sealed(plain()))]},
                headers=bearer(OPERATOR_TOKEN),
            )
    assert_refused(response, 500, "internal error; it has been logged")
    [record] = caplog.records
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "the API's client always has the payload codec"


# --- a browser's codec session ----------------------------------------------------------------


def set_cookie(response: httpx.Response) -> SimpleCookie:
    [header] = response.headers.get_list("set-cookie")
    cookie = SimpleCookie()
    cookie.load(header)
    return cookie


async def sign_in(
    config: Settings, base_url: str = "http://testserver", **request: Any
) -> httpx.Response:
    async with client_of(real_app(config), base_url=base_url) as client:
        return await client.post("/codec/session", **request)


@pytest.mark.parametrize(
    "request_",
    [
        {"data": {"token": OPERATOR_TOKEN}},
        {"data": {"token": f"  {OPERATOR_TOKEN}\n"}},
        {"headers": bearer(OPERATOR_TOKEN)},
    ],
    ids=["form", "form-with-spaces", "bearer"],
)
async def test_the_operator_signs_a_browser_in_for_twelve_hours(request_: dict[str, Any]) -> None:
    before = int(time.time())
    response = await sign_in(codec_settings(), **request_)
    after = int(time.time())
    assert response.status_code == 200
    assert "Signed in for 12 hours: the Web UI in this browser can decode." in response.text
    morsel = set_cookie(response)[COOKIE]
    assert morsel["httponly"] is True
    assert morsel["samesite"].lower() == "strict"
    assert morsel["path"] == "/codec"
    assert morsel["max-age"] == str(TWELVE_HOURS)
    assert not morsel["secure"]  # plain HTTP: a Secure cookie would never come back
    expires = int(morsel.value.partition(".")[0])
    assert before + TWELVE_HOURS <= expires <= after + TWELVE_HOURS
    assert morsel.value == session_value(OPERATOR_TOKEN, expires)
    assert OPERATOR_TOKEN not in response.headers["set-cookie"]

    decoded = await decode(codec_settings(), [as_json(sealed(plain()))], cookie=morsel.value)
    assert decoded.json() == {"payloads": [as_json(plain())]}


def test_a_session_is_made_for_twelve_hours_from_the_sign_in() -> None:
    config = codec_settings()
    assert codec_routes.session_cookie(config, now=1_000.9) == session_value(
        OPERATOR_TOKEN, 1_000 + TWELVE_HOURS
    )


async def test_over_https_the_cookie_is_secure() -> None:
    response = await sign_in(
        codec_settings(), base_url="https://api.example", headers=bearer(OPERATOR_TOKEN)
    )
    assert set_cookie(response)[COOKIE]["secure"] is True


@pytest.mark.parametrize(
    ("request_", "status", "detail"),
    [
        ({}, 401, OPERATOR_ACTION_401),
        ({"data": {"token": "  "}}, 401, OPERATOR_ACTION_401),
        ({"data": {"other": OPERATOR_TOKEN}}, 401, OPERATOR_ACTION_401),
        ({"data": {"token": "wrong"}}, 403, OPERATOR_ACTION_403),
        ({"headers": bearer(CUSTOMER)}, 403, OPERATOR_ACTION_403),
        # Bytes that are not UTF-8 make no token, and no error.
        ({"content": b"token=\xff\xfe"}, 403, OPERATOR_ACTION_403),
    ],
    ids=["nothing", "blank", "another-field", "wrong", "customer", "not-utf8"],
)
async def test_a_failed_sign_in_sets_no_cookie(
    request_: dict[str, Any], status: int, detail: str
) -> None:
    response = await sign_in(codec_settings(), **request_)
    assert_refused(response, status, detail)
    assert "set-cookie" not in response.headers


async def test_without_an_operator_token_nobody_signs_in() -> None:
    response = await sign_in(codec_settings(operator_token=None), data={"token": OPERATOR_TOKEN})
    assert response.status_code == 503
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    "cookie",
    [
        session_value(OPERATOR_TOKEN, int(time.time()) - 1),  # expired
        session_value("another-operator-token-" + "x" * 24, int(time.time()) + 60),
        session_value(OPERATOR_TOKEN, int(time.time()) + 60).replace(".", ".0", 1),
        str(int(time.time()) + 10**6) + "." + session_value(OPERATOR_TOKEN, 1).partition(".")[2],
        "-1." + session_value(OPERATOR_TOKEN, -1).partition(".")[2],
        "garbage",
        "",
    ],
    ids=[
        "expired",
        "another-token",
        "mac-altered",
        "expiry-extended",
        "negative",
        "garbage",
        "empty",
    ],
)
async def test_a_session_that_is_not_a_current_sign_in_is_a_401(cookie: str) -> None:
    response = await decode(codec_settings(), [as_json(sealed(plain()))], cookie=cookie)
    assert_refused(response, 401, SESSION_401)
    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_session_lasts_until_its_expiry_second(monkeypatch: pytest.MonkeyPatch) -> None:
    expires = int(time.time()) + 60
    cookie = session_value(OPERATOR_TOKEN, expires)

    class Clock:
        now = float(expires)

        @classmethod
        def time(cls) -> float:
            return cls.now

    monkeypatch.setattr(codec_routes, "time", Clock)
    payloads = [as_json(sealed(plain()))]
    assert (await decode(codec_settings(), payloads, cookie=cookie)).status_code == 200
    Clock.now = expires + 0.5
    assert_refused(await decode(codec_settings(), payloads, cookie=cookie), 401, SESSION_401)


async def test_a_bearer_token_is_checked_even_beside_a_valid_session() -> None:
    cookie = session_value(OPERATOR_TOKEN, int(time.time()) + 60)
    for token in ("garbage", CUSTOMER):
        response = await decode(
            codec_settings(), [as_json(sealed(plain()))], headers=bearer(token), cookie=cookie
        )
        assert_refused(response, 403, OPERATOR_ACTION_403)


async def test_a_session_opens_the_codec_and_nothing_else() -> None:
    cookie = session_value(OPERATOR_TOKEN, int(time.time()) + 60)
    async with client_of(real_app(codec_settings())) as client:
        client.cookies.set(COOKIE, cookie)  # sent everywhere, not only under /codec
        response = await client.post("/projections/rebuild")
    assert_refused(response, 401, OPERATOR_ACTION_401)


async def test_signing_out_removes_the_cookie() -> None:
    async with client_of(real_app(codec_settings())) as client:
        response = await client.post("/codec/session/end")
    assert response.status_code == 200
    assert "Signed out." in response.text
    morsel = set_cookie(response)[COOKIE]
    assert morsel.value == ""
    assert morsel["max-age"] == "0"
    assert (morsel["path"], morsel["httponly"], morsel["samesite"].lower()) == (
        "/codec",
        True,
        "strict",
    )


async def test_the_sign_in_page_is_never_framed_nor_cached() -> None:
    async with client_of(real_app(codec_settings())) as client:
        page = await client.get("/codec/session")
        refused = await client.post("/codec/session", data={"token": "wrong"})
        signed_in = await client.post("/codec/session", data={"token": OPERATOR_TOKEN})
        signed_out = await client.post("/codec/session/end")
    for response in (page, signed_in, signed_out):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
    assert refused.status_code == 403
    text = page.text
    assert "Sign in with the operator token to let this browser&#x27;s Web UI decode." in text
    assert '<form method="post" action="/codec/session">' in text
    assert '<form method="post" action="/codec/session/end">' in text
    assert "endpoint\n<code>http://testserver/codec</code>" in text


@pytest.mark.parametrize("host", ["localhost:8000", "api.example", "MAILBOX"])
async def test_the_sign_in_page_names_the_codec_endpoint_the_browser_reaches(host: str) -> None:
    async with client_of(real_app(codec_settings())) as client:
        page = await client.get("/codec/session", headers={"host": host})
    assert f"<code>http://{host}/codec</code>" in page.text


# --- CORS -------------------------------------------------------------------------------------


def preflight(origin: str, method: str = "POST", headers: str = "content-type,x-namespace") -> dict:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


async def test_the_web_ui_may_call_decode_with_credentials() -> None:
    async with client_of(real_app(codec_settings())) as client:
        allowed = await client.options(
            "/codec/decode", headers=preflight(UI, headers="content-type,x-namespace,authorization")
        )
        answer = await client.post("/codec/decode", json={"payloads": []}, headers={"Origin": UI})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == UI
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert allowed.headers["access-control-allow-methods"] == "POST"
    assert allowed.headers["access-control-max-age"] == "600"
    allowed_headers = set(allowed.headers["access-control-allow-headers"].lower().split(", "))
    assert {"content-type", "x-namespace", "authorization"} <= allowed_headers
    # Even a refusal carries what the UI needs to read it.
    assert answer.status_code == 401
    assert answer.headers["access-control-allow-origin"] == UI
    assert answer.headers["access-control-allow-credentials"] == "true"


@pytest.mark.parametrize(
    "headers",
    [
        preflight("http://evil.example"),
        preflight("null"),
        preflight(UI, method="GET"),
        preflight(UI, method="PUT"),
        preflight(UI, headers="content-type,x-custom"),
    ],
    ids=["other-origin", "null-origin", "get", "put", "other-header"],
)
async def test_anything_else_is_refused_by_the_preflight(headers: dict[str, str]) -> None:
    async with client_of(real_app(codec_settings())) as client:
        response = await client.options("/codec/decode", headers=headers)
    assert response.status_code == 400
    if headers["Origin"] != UI:
        assert "access-control-allow-origin" not in response.headers


async def test_no_other_route_answers_cross_origin_requests() -> None:
    async with client_of(real_app(codec_settings())) as client:
        responses = [
            await client.options(path, headers=preflight(UI))
            for path in ("/codec/session", "/codec/session/end", "/orders", "/codec/decode/")
        ]
        responses.append(
            await client.post(
                "/codec/session", data={"token": OPERATOR_TOKEN}, headers={"Origin": UI}
            )
        )
    for response in responses:
        assert "access-control-allow-origin" not in response.headers
        assert "access-control-allow-credentials" not in response.headers


async def test_a_payload_too_short_to_be_ciphertext_is_a_400() -> None:
    truncated = {
        "metadata": {"encoding": b64(b"binary/encrypted"), "encryption-key-id": b64(b"test-1")}
    }
    response = await decode(codec_settings(), [truncated], headers=bearer(OPERATOR_TOKEN))
    assert response.status_code == 400
