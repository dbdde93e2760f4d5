"""The console's session cookie (api/console/session.py): sealed with AES-GCM, so the browser
can neither read the bearer token and CSRF token inside nor change a byte of it; what a session
carries as the visitor signs in and out and fills the cart."""

from __future__ import annotations

import base64
import time

import pytest
from pydantic import SecretStr

from api.console.session import MAX_CART_LINES, SESSION_SECONDS, Sealer, Session
from cloudmart.settings import MIN_SECRET_LENGTH, Settings

SECRET = "x" * MIN_SECRET_LENGTH
OTHER_SECRET = "y" * MIN_SECRET_LENGTH
BEARER = "bearer-token-" + "b" * 32


def sealer(secret: str | None = SECRET) -> Sealer:
    """A Sealer keyed by ``secret`` alone (None: by neither auth secret nor operator token),
    whatever the environment holds."""
    value = SecretStr(secret) if secret is not None else None
    return Sealer(Settings(auth_secret=value, operator_token=None))


def signed_in_session() -> Session:
    return (
        Session()
        .shopping_as("c-7")
        .with_cart_line("sku-1", 2)
        .with_cart_line("sku-2", 1)
        .signed_in(bearer=BEARER, role="customer", who="c-42")
    )


def unpadded_b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def test_a_sealed_session_opens_again_equal() -> None:
    session = signed_in_session()
    opened = sealer().open(sealer().seal(session))
    assert opened == session
    assert opened is not None
    assert (opened.cart, opened.role, opened.who, opened.bearer, opened.csrf, opened.shopper) == (
        (("sku-1", 2), ("sku-2", 1)),
        "customer",
        "c-42",
        BEARER,
        session.csrf,
        "c-7",
    )


def test_a_sealed_cookie_shows_neither_the_bearer_token_nor_the_csrf_token() -> None:
    session = signed_in_session()
    value = sealer().seal(session)
    raw = unpadded_b64decode(value)
    for secret in (BEARER, session.csrf):
        assert secret not in value
        assert secret.encode() not in raw
        assert base64.urlsafe_b64encode(secret.encode()).decode().rstrip("=") not in value


def test_a_cookie_with_any_byte_changed_opens_as_none() -> None:
    opener = sealer()
    raw = bytearray(unpadded_b64decode(opener.seal(signed_in_session())))
    for position in range(len(raw)):
        altered = raw.copy()
        altered[position] ^= 0x01
        assert opener.open(base64.urlsafe_b64encode(bytes(altered)).decode()) is None, position


def test_a_cookie_with_a_character_flipped_in_the_middle_opens_as_none() -> None:
    value = sealer().seal(signed_in_session())
    middle = len(value) // 2
    flipped = "A" if value[middle] != "A" else "B"
    assert sealer().open(value[:middle] + flipped + value[middle + 1 :]) is None


def test_a_cookie_sealed_under_another_secret_opens_as_none() -> None:
    assert sealer(OTHER_SECRET).open(sealer(SECRET).seal(signed_in_session())) is None


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        "not base64 at all!",
        "AAAA",
        base64.urlsafe_b64encode(b"\x00" * 12).decode(),
        base64.urlsafe_b64encode(b"\x00" * 64).decode(),
    ],
    ids=["none", "empty", "word", "not-base64", "short", "nonce-only", "zeros"],
)
def test_a_missing_or_garbage_cookie_opens_as_none(value: str | None) -> None:
    assert sealer().open(value) is None


def test_an_expired_session_opens_as_none() -> None:
    expired = Session(bearer=BEARER, role="customer", who="c-42", expires=int(time.time()) - 1)
    assert sealer().open(sealer().seal(expired)) is None


def test_checks_accepts_the_sessions_own_csrf_token_only() -> None:
    session, other = Session(), Session()
    assert session.checks(session.csrf)
    assert not session.checks(None)
    assert not session.checks("")
    assert not session.checks(other.csrf)
    assert not session.checks(session.csrf[:-1])


def test_signing_in_changes_the_csrf_token() -> None:
    visitor = Session()
    signed_in = visitor.signed_in(bearer=BEARER, role="operator", who="ada")
    assert signed_in.csrf != visitor.csrf
    assert not signed_in.checks(visitor.csrf)
    assert (signed_in.bearer, signed_in.role, signed_in.who) == (BEARER, "operator", "ada")
    assert signed_in.operator


def test_a_sign_in_late_in_a_visit_gets_a_whole_session() -> None:
    visitor = Session(expires=int(time.time()) + 60)  # a minute left of the visit
    signed_in = visitor.signed_in(bearer=BEARER, role="operator", who="ada")
    assert signed_in.expires >= int(time.time()) + SESSION_SECONDS - 5


def test_signing_out_keeps_the_cart_and_shopper_but_drops_who_the_visitor_was() -> None:
    session = signed_in_session()
    signed_out = session.signed_out()
    assert (signed_out.cart, signed_out.shopper) == (session.cart, session.shopper)
    assert (signed_out.bearer, signed_out.role, signed_out.who) == (None, None, None)
    assert not signed_out.checks(session.csrf)


def test_setting_a_cart_lines_quantity_replaces_the_line() -> None:
    session = Session().with_cart_line("sku-1", 2).with_cart_line("sku-2", 1)
    assert session.with_cart_line("sku-1", 5).cart == (("sku-1", 5), ("sku-2", 1))


@pytest.mark.parametrize("quantity", [0, -1])
def test_a_quantity_of_zero_or_less_removes_the_line(quantity: int) -> None:
    session = Session().with_cart_line("sku-1", 2).with_cart_line("sku-2", 1)
    assert session.with_cart_line("sku-1", quantity).cart == (("sku-2", 1),)
    assert session.with_cart_line("sku-3", quantity).cart == session.cart


def test_a_cart_keeps_at_most_max_cart_lines() -> None:
    session = Session()
    for line in range(MAX_CART_LINES + 5):
        session = session.with_cart_line(f"sku-{line}", 1)
    assert len(session.cart) == MAX_CART_LINES
    assert [sku for sku, _ in session.cart] == [f"sku-{line}" for line in range(MAX_CART_LINES)]


def test_sealers_with_the_same_secret_open_each_others_cookies() -> None:
    """What lets a session outlive a restart of the API."""
    session = signed_in_session()
    assert sealer(SECRET).open(sealer(SECRET).seal(session)) == session
    by_operator_token = Sealer(Settings(auth_secret=None, operator_token=SecretStr(OTHER_SECRET)))
    assert sealer(OTHER_SECRET).open(by_operator_token.seal(session)) == session


def test_a_sealer_without_a_secret_opens_only_its_own_cookies() -> None:
    session = signed_in_session()
    first, second = sealer(None), sealer(None)
    assert first.open(first.seal(session)) == session
    assert second.open(first.seal(session)) is None
    assert first.open(second.seal(session)) is None
