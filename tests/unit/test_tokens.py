"""Customer tokens: HS256 JWTs naming the customer, refused when forged, malformed or expired;
minted by ``python -m api.tokens`` with the API's secret or the one ``make up`` keeps."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.tokens import InvalidToken, mint, verify
from cloudmart.credentials import AUTH_SECRET_FILE
from cloudmart.settings import Settings
from devstack.stack import settings_env

SECRET = "s" * 32


def test_a_token_names_its_customer_until_it_expires() -> None:
    token = mint("c-42", SECRET, ttl=timedelta(minutes=5), now=1_000_000)
    assert verify(token, SECRET, now=1_000_000 + 299) == "c-42"
    with pytest.raises(InvalidToken, match="expired"):
        verify(token, SECRET, now=1_000_000 + 300)


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        (lambda t: mint("c-42", "x" * 32), "bad signature"),  # another secret
        (lambda t: t.replace(t.split(".")[1], mint("c-43", "x" * 32).split(".")[1]), "signature"),
        # {"alg":"none"} with the original claims and no signature
        (lambda t: "eyJhbGciOiJub25lIn0." + t.split(".")[1] + ".", "algorithm"),
        (lambda t: t + "x", "bad signature"),
        (lambda t: "not-a-token", "not a JWT"),
        (lambda t: "bm9w.bm9w.bm9w", "not JSON"),  # "nop"
        (lambda t: "a.b.c", "not base64url"),
        (lambda t: "é.é.é", "not base64url"),
        (lambda t: "a" * 3000, "too long"),
    ],
)
def test_a_forged_or_malformed_token_is_refused(forge, reason: str) -> None:
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


def test_secrets_are_never_empty_or_short() -> None:
    assert Settings(operator_token="", auth_secret="").operator_token is None
    for field in ("operator_token", "auth_secret"):
        with pytest.raises(ValidationError, match="at least 24 characters"):
            Settings(**{field: "changeme"})
