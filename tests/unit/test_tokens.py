"""Customer tokens: HS256 JWTs for this API naming the customer, refused when forged, malformed,
expired, not yet valid or too long-lived; minted by ``python -m api.tokens`` with the API's
secret or the one ``make up`` keeps."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from pydantic import ValidationError

from api.tokens import AUDIENCE, LEEWAY, MAX_TOKEN_LENGTH, InvalidToken, mint, verify
from cloudmart.credentials import AUTH_SECRET_FILE
from cloudmart.settings import Settings
from devstack.stack import settings_env

SECRET = "s" * 32
DAY = 24 * 3600
DROP = object()
"""A claim left out."""


def claims(**changed: object) -> dict[str, object]:
    """A valid token's claims, issued now for five minutes, with ``changed`` ones."""
    now = int(time.time())
    base = {"sub": "c-42", "aud": AUDIENCE, "iat": now, "exp": now + 300}
    return {k: v for k, v in {**base, **changed}.items() if v is not DROP}


def signed(payload: dict[str, object], secret: str = SECRET, algorithm: str = "HS256") -> str:
    with warnings.catch_warnings():  # HS512 would like a longer key: a forgery needs none
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return jwt.encode(payload, secret, algorithm=algorithm)


def b64(document: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()


def spare_bits_flipped(token: str) -> str:
    """The same signature bytes, spelled otherwise: its last character's unused low bits set."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    return token[:-1] + alphabet[last ^ 1]


def test_a_token_names_its_customer_until_it_expires() -> None:
    token = mint("c-42", SECRET, ttl=timedelta(minutes=5))
    assert verify(token, SECRET) == "c-42"
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    assert set(jwt.decode(token, options={"verify_signature": False})) == {
        *("sub", "aud", "iat", "exp")
    }
    past = time.time() - 3600
    with pytest.raises(InvalidToken, match="expired"):
        verify(mint("c-42", SECRET, ttl=timedelta(minutes=59), now=past), SECRET)


def test_clocks_may_differ_by_the_leeway_and_no_more() -> None:
    now = int(time.time())
    skewed = int(LEEWAY.total_seconds()) // 2
    assert verify(signed(claims(iat=now + skewed, nbf=now + skewed)), SECRET) == "c-42"
    assert verify(signed(claims(iat=now - 300, exp=now - skewed)), SECRET) == "c-42"


def test_the_lifetime_is_at_most_the_configured_maximum() -> None:
    now = int(time.time())
    month = signed(claims(exp=now + 30 * DAY))
    assert verify(month, SECRET) == "c-42"  # the default maximum: 30 days
    with pytest.raises(InvalidToken, match="lives longer than the maximum, 1:00:00"):
        verify(month, SECRET, max_lifetime=timedelta(hours=1))


NOW = int(time.time())
REFUSED: dict[str, tuple[Callable[[str], str], str]] = {
    # (what the good token is made into, what the refusal says)
    "another secret": (lambda t: signed(claims(), "x" * 32), "bad signature"),
    "another's claims": (
        lambda t: t.replace(t.split(".")[1], signed(claims(sub="c-43")).split(".")[1]),
        "bad signature",
    ),
    "no signature": (lambda t: t.rsplit(".", 1)[0] + ".", "bad signature"),
    "alg none": (lambda t: f"{b64({'alg': 'none'})}.{t.split('.')[1]}.", "unsupported algorithm"),
    "alg HS512": (lambda t: signed(claims(), algorithm="HS512"), "unsupported algorithm"),
    "!! after the signature": (lambda t: t + "!!", "not a JWT"),
    "padding after the signature": (lambda t: t + "=", "not a JWT"),
    "spare bits in the signature": (spare_bits_flipped, "canonical"),
    "no exp": (lambda t: signed(claims(exp=DROP)), "no exp claim"),
    "no iat": (lambda t: signed(claims(iat=DROP)), "no iat claim"),
    "no aud": (lambda t: signed(claims(aud=DROP)), "no aud claim"),
    "no sub": (lambda t: signed(claims(sub=DROP)), "no sub claim"),
    "another audience": (lambda t: signed(claims(aud="another-api")), "not for this API"),
    "audiences": (lambda t: signed(claims(aud=[AUDIENCE, "x"])), "not for this API"),
    "expired": (lambda t: signed(claims(iat=NOW - DAY, exp=NOW - 3600)), "expired"),
    "issued in the future": (
        lambda t: signed(claims(iat=NOW + 3600, exp=NOW + 7200)),
        "not valid yet",
    ),
    "not before the future": (lambda t: signed(claims(nbf=NOW + 3600)), "not valid yet"),
    "31 days": (lambda t: signed(claims(exp=NOW + 31 * DAY)), "lives longer than the maximum"),
    "exp in 9999": (lambda t: signed(claims(exp=253402300799)), "lives longer than the maximum"),
    "exp as a string": (lambda t: signed(claims(exp=str(NOW + 300))), "must be integers"),
    "iat as a fraction": (lambda t: signed(claims(iat=NOW + 0.5)), "must be integers"),
    "not a customer id": (lambda t: signed(claims(sub="no spaces")), "no valid customer id"),
    "over 2,048 characters": (
        lambda t: signed(claims(pad="x" * MAX_TOKEN_LENGTH)),
        "token too long",
    ),
    "two segments": (lambda t: "not-a.token", "not a JWT"),
    "not base64url": (lambda t: "é.é.é", "not a JWT"),
    "a signature of no bytes": (lambda t: "a.b.c", "base64url"),
    "not JSON": (lambda t: "bm9w.bm9w.bm9w", "malformed"),  # "nop"
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_forged_malformed_or_out_of_bounds_token_is_refused(case: str) -> None:
    forge, reason = REFUSED[case]
    with pytest.raises(InvalidToken, match=reason):
        verify(forge(mint("c-42", SECRET)), SECRET)


def test_only_a_customer_id_can_be_minted() -> None:
    with pytest.raises(ValidationError):
        mint("no spaces allowed", SECRET)


def run_tokens_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.tokens", *args], env=env, capture_output=True, text=True
    )


def test_the_cli_mints_with_the_apis_secret_or_the_one_make_up_keeps(tmp_path: Path) -> None:
    env = settings_env(Settings(data_dir=tmp_path))
    base = {k: v for k, v in env.items() if k != "CLOUDMART_AUTH_SECRET"}
    given = run_tokens_cli("c-7", env={**base, "CLOUDMART_AUTH_SECRET": SECRET})
    assert given.returncode == 0, given.stderr
    assert verify(given.stdout.strip(), SECRET) == "c-7"

    none = run_tokens_cli("c-7", env=base)
    assert none.returncode == 2
    assert "CLOUDMART_AUTH_SECRET" in none.stderr

    (tmp_path / AUTH_SECRET_FILE).write_text("k" * 43 + "\n")
    stored = run_tokens_cli("c-7", "--ttl", "60", env=base)
    assert stored.returncode == 0, stored.stderr
    assert verify(stored.stdout.strip(), "k" * 43) == "c-7"

    bad = run_tokens_cli("not a customer", env=base)
    assert (bad.returncode, bad.stderr.strip()) == (2, "not a customer id: 'not a customer'")

    # Longer than the API accepts: refused here rather than at the first request.
    limited = {**base, "CLOUDMART_CUSTOMER_TOKEN_MAX_LIFETIME": "PT1H"}
    too_long = run_tokens_cli("c-7", "--ttl", "3601", env=limited)
    assert too_long.returncode == 2
    assert "at most 3600 seconds (CLOUDMART_CUSTOMER_TOKEN_MAX_LIFETIME)" in too_long.stderr
    shortened = run_tokens_cli("c-7", env=limited)  # the default, 24 h, capped at the maximum
    assert shortened.returncode == 0, shortened.stderr
    claimed = jwt.decode(shortened.stdout.strip(), options={"verify_signature": False})
    assert claimed["exp"] - claimed["iat"] == 3600


def test_secrets_are_never_empty_or_short() -> None:
    assert Settings(operator_token="", auth_secret="").operator_token is None
    for field in ("operator_token", "auth_secret"):
        with pytest.raises(ValidationError, match="at least 24 characters"):
            Settings(**{field: "changeme"})
