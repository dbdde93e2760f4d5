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

from api.tokens import AUDIENCE, LEEWAY, MAX_TOKEN_LENGTH, InvalidToken, main, mint, verify
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
ALGORITHM_ONLY = "unsupported algorithm (only HS256)"
NOT_A_JWT = "not a JWT (three base64url segments, unpadded)"
NOT_CANONICAL = "signature is not base64url in its canonical form"
NOT_FOR_US = f"not for this API (aud must be {AUDIENCE})"
NOT_YET = "not valid yet (iat or nbf in the future)"
TOO_LONG_LIVED = "lives longer than the maximum, 30 days, 0:00:00 (exp - iat)"
NOT_INTEGERS = "iat, exp and nbf must be integers (seconds since the epoch)"
REFUSED: dict[str, tuple[Callable[[str], str], str]] = {
    # (what the good token is made into, what the refusal says)
    "another secret": (lambda t: signed(claims(), "x" * 32), "bad signature"),
    "another's claims": (
        lambda t: t.replace(t.split(".")[1], signed(claims(sub="c-43")).split(".")[1]),
        "bad signature",
    ),
    "no signature": (lambda t: t.rsplit(".", 1)[0] + ".", "bad signature"),
    "alg none": (lambda t: f"{b64({'alg': 'none'})}.{t.split('.')[1]}.", ALGORITHM_ONLY),
    "alg HS512": (lambda t: signed(claims(), algorithm="HS512"), ALGORITHM_ONLY),
    "!! after the signature": (lambda t: t + "!!", NOT_A_JWT),
    "padding after the signature": (lambda t: t + "=", NOT_A_JWT),
    "spare bits in the signature": (spare_bits_flipped, NOT_CANONICAL),
    # Well-formed signatures of another length: bad signatures, not malformed ones.
    "a signature a character longer": (lambda t: t + "X", "bad signature"),
    "a signature of 7 bytes": (lambda t: t[: t.rindex(".") + 10] + "A", "bad signature"),
    "no exp": (lambda t: signed(claims(exp=DROP)), "no exp claim"),
    "no iat": (lambda t: signed(claims(iat=DROP)), "no iat claim"),
    "no aud": (lambda t: signed(claims(aud=DROP)), "no aud claim"),
    "no sub": (lambda t: signed(claims(sub=DROP)), "no sub claim"),
    "another audience": (lambda t: signed(claims(aud="another-api")), NOT_FOR_US),
    "audiences": (lambda t: signed(claims(aud=[AUDIENCE, "x"])), NOT_FOR_US),
    "expired": (lambda t: signed(claims(iat=NOW - DAY, exp=NOW - 3600)), "expired"),
    "issued in the future": (
        lambda t: signed(claims(iat=NOW + 3600, exp=NOW + 7200)),
        NOT_YET,
    ),
    "not before the future": (lambda t: signed(claims(nbf=NOW + 3600)), NOT_YET),
    "31 days": (lambda t: signed(claims(exp=NOW + 31 * DAY)), TOO_LONG_LIVED),
    "exp in 9999": (lambda t: signed(claims(exp=253402300799)), TOO_LONG_LIVED),
    "exp as a string": (lambda t: signed(claims(exp=str(NOW + 300))), NOT_INTEGERS),
    "iat as a fraction": (lambda t: signed(claims(iat=NOW + 0.5)), NOT_INTEGERS),
    "nbf as a fraction": (lambda t: signed(claims(nbf=NOW - 9.5)), NOT_INTEGERS),
    "not a customer id": (lambda t: signed(claims(sub="no spaces")), "no valid customer id (sub)"),
    "over 2,048 characters": (
        lambda t: signed(claims(pad="x" * MAX_TOKEN_LENGTH)),
        "token too long",
    ),
    "two segments": (lambda t: "not-a.token", NOT_A_JWT),
    "not base64url": (lambda t: "é.é.é", NOT_A_JWT),
    "a signature of no bytes": (lambda t: "a.b.c", "signature is not base64url"),
    "not JSON": (lambda t: "bm9w.bm9w.bm9w", "malformed"),  # "nop"
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_forged_malformed_or_out_of_bounds_token_is_refused(case: str) -> None:
    forge, reason = REFUSED[case]
    with pytest.raises(InvalidToken) as refused:
        verify(forge(mint("c-42", SECRET)), SECRET)
    assert str(refused.value) == reason  # said to the client as it is


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
        with pytest.raises(ValidationError, match="at least 32 characters"):
            Settings(**{field: "changeme"})


def test_a_token_of_exactly_the_longest_length_is_read() -> None:
    lengths = {}
    for pad in range(MAX_TOKEN_LENGTH):
        token = signed(claims(pad="x" * pad))
        lengths[len(token)] = token
        if len(token) > MAX_TOKEN_LENGTH:
            break
    assert verify(lengths[MAX_TOKEN_LENGTH], SECRET) == "c-42"
    with pytest.raises(InvalidToken, match=r"^token too long$"):
        verify(lengths[MAX_TOKEN_LENGTH + 1], SECRET)


# --- python -m api.tokens, in this process ------------------------------------------------------


def mint_cli(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *args: str,
    **settings: object,
) -> tuple[int, str, str]:
    """``python -m api.tokens args`` with these settings: (exit status, stdout, stderr)."""
    monkeypatch.setattr("api.tokens.get_settings", lambda: Settings(**settings))
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def lifetime(token: str) -> int:
    claimed = jwt.decode(token, options={"verify_signature": False})
    return claimed["exp"] - claimed["iat"]


def test_the_cli_mints_a_days_token_by_default_or_for_ttl_seconds(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, out, err = mint_cli(monkeypatch, capsys, "c-7", auth_secret=SECRET, data_dir=tmp_path)
    assert (status, err) == (0, "")
    assert out.endswith("\n") and out.count("\n") == 1
    assert verify(out.strip(), SECRET) == "c-7"
    assert lifetime(out.strip()) == DAY
    status, out, err = mint_cli(
        monkeypatch, capsys, "c-7", "--ttl", "60", auth_secret=SECRET, data_dir=tmp_path
    )
    assert (status, err, lifetime(out.strip())) == (0, "", 60)


def test_the_cli_keeps_within_the_configured_maximum(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    hour = {"auth_secret": SECRET, "data_dir": tmp_path, "customer_token_max_lifetime": "PT1H"}
    status, out, _ = mint_cli(monkeypatch, capsys, "c-7", **hour)
    assert (status, lifetime(out.strip())) == (0, 3600)  # the default day, capped
    status, out, _ = mint_cli(monkeypatch, capsys, "c-7", "--ttl", "3600", **hour)
    assert (status, lifetime(out.strip())) == (0, 3600)
    for ttl in ("3601", "0", "-60"):
        status, out, err = mint_cli(monkeypatch, capsys, "c-7", "--ttl", ttl, **hour)
        assert (status, out) == (2, "")
        assert err == (
            "--ttl must be positive and at most 3600 seconds "
            "(CLOUDMART_CUSTOMER_TOKEN_MAX_LIFETIME)\n"
        )


def test_the_cli_signs_with_the_apis_secret_else_the_one_make_up_keeps(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, out, err = mint_cli(monkeypatch, capsys, "c-7", data_dir=tmp_path)
    assert (status, out) == (2, "")
    assert err == (
        "no auth secret: set CLOUDMART_AUTH_SECRET to the API's, or run `make up` once "
        "(it keeps one in the data directory)\n"
    )
    (tmp_path / AUTH_SECRET_FILE).write_text("k" * 43 + "\n")
    status, out, _ = mint_cli(monkeypatch, capsys, "c-7", data_dir=tmp_path)
    assert (status, verify(out.strip(), "k" * 43)) == (0, "c-7")
    status, out, _ = mint_cli(monkeypatch, capsys, "c-7", data_dir=tmp_path, auth_secret=SECRET)
    assert (status, verify(out.strip(), SECRET)) == (0, "c-7")  # the configured secret wins


def test_the_cli_mints_for_customer_ids_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, out, err = mint_cli(
        monkeypatch, capsys, "not a customer", auth_secret=SECRET, data_dir=tmp_path
    )
    assert (status, out, err) == (2, "", "not a customer id: 'not a customer'\n")


def test_the_cli_says_how_it_is_used(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    text = " ".join(out.split())
    assert text.startswith("usage: python -m api.tokens [-h] [--ttl TTL] customer_id")
    assert "Mint a customer's bearer token." in out.splitlines()
    assert (
        "--ttl TTL seconds until it expires (default: 86400, or "
        "CLOUDMART_CUSTOMER_TOKEN_MAX_LIFETIME if that is shorter)"
    ) in text
    with pytest.raises(SystemExit) as exited:
        main(["c-7", "--ttl", "an hour"])
    assert exited.value.code == 2
    assert "argument --ttl: invalid int value: 'an hour'" in capsys.readouterr().err
