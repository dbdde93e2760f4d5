"""The settings of the connection to Temporal's frontend, on their own: when TLS is on, what
``connect`` hands the SDK, the refusals that stop a process at startup (naming the setting),
and the API key, which no dump, repr or refusal shows. tests/system/test_temporal_tls.py
connects through a frontend that requires mutual TLS."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError
from temporalio.service import TLSConfig

from cloudmart.settings import Settings, bad_settings
from cloudmart.temporal import tls_config, unreachable_hint
from devstack.stack import settings_env
from tests.tls import CertificateAuthority, Issued

API_KEY = "tmprl-api-key.0123456789abcdef"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Issued]:
    """A CA certificate, and a client certificate and key it issued."""
    ca = CertificateAuthority("unit", tmp_path_factory.mktemp("pki"))
    return ca.cert, ca.issue("worker", server=False)


def refusal(**settings: object) -> str:
    """What a process prints when refusing to start with ``settings``."""
    with pytest.raises(ValidationError) as refused:
        Settings(**settings)  # type: ignore[arg-type]
    return bad_settings(refused.value)


def test_tls_is_off_unless_a_tls_setting_or_the_api_key_asks_for_it(
    files: tuple[Path, Issued],
) -> None:
    ca, client = files
    assert tls_config(Settings()) is False  # False, not None: the SDK would decide on None
    assert not Settings(temporal_tls=False).temporal_tls_on
    for implied in (
        {"temporal_tls": True},
        {"temporal_tls_ca": ca},
        {"temporal_tls_cert": client.cert, "temporal_tls_key": client.key},
        {"temporal_tls_server_name": "temporal.internal"},
        {"temporal_api_key": API_KEY},
    ):
        assert Settings(**implied).temporal_tls_on, implied  # type: ignore[arg-type]


def test_the_sdk_gets_the_files_contents_and_the_server_name(files: tuple[Path, Issued]) -> None:
    ca, client = files
    settings = Settings(
        temporal_tls_ca=ca,
        temporal_tls_cert=client.cert,
        temporal_tls_key=client.key,
        temporal_tls_server_name="temporal.internal",
    )
    assert tls_config(settings) == TLSConfig(
        server_root_ca_cert=ca.read_bytes(),
        client_cert=client.cert.read_bytes(),
        client_private_key=client.key.read_bytes(),
        domain="temporal.internal",
    )
    # On with nothing else: the system's roots verify the frontend, as for Temporal Cloud.
    assert tls_config(Settings(temporal_api_key=API_KEY)) == TLSConfig()


def test_the_settings_are_read_from_the_environment_and_empty_means_unset(
    monkeypatch: pytest.MonkeyPatch, files: tuple[Path, Issued]
) -> None:
    ca, client = files
    monkeypatch.setenv("CLOUDMART_TEMPORAL_TLS_CA", str(ca))
    monkeypatch.setenv("CLOUDMART_TEMPORAL_TLS_CERT", str(client.cert))
    monkeypatch.setenv("CLOUDMART_TEMPORAL_TLS_KEY", str(client.key))
    monkeypatch.setenv("CLOUDMART_TEMPORAL_API_KEY", API_KEY)
    settings = Settings()
    assert (settings.temporal_tls_ca, settings.temporal_tls_cert) == (ca, client.cert)
    assert settings.temporal_api_key is not None
    assert settings.temporal_api_key.get_secret_value() == API_KEY
    # compose passes an unset variable as "" (${VAR:-}): unset, not the current directory.
    for name in ("TLS", "TLS_CA", "TLS_CERT", "TLS_KEY", "TLS_SERVER_NAME", "API_KEY"):
        monkeypatch.setenv(f"CLOUDMART_TEMPORAL_{name}", "")
    assert not Settings().temporal_tls_on


@pytest.mark.parametrize(("given", "missing"), [("cert", "key"), ("key", "cert")])
def test_a_client_certificate_needs_its_key_and_the_key_its_certificate(
    files: tuple[Path, Issued], given: str, missing: str
) -> None:
    _, client = files
    said = refusal(**{f"temporal_tls_{given}": getattr(client, given)})
    assert (
        f"CLOUDMART_TEMPORAL_TLS_{given.upper()} is set without "
        f"CLOUDMART_TEMPORAL_TLS_{missing.upper()}"
    ) in said


@pytest.mark.parametrize("setting", ["ca", "cert", "key"])
def test_a_file_that_cannot_be_read_is_refused_naming_its_setting(
    tmp_path: Path, setting: str
) -> None:
    missing = tmp_path / "missing.pem"
    said = refusal(**{f"temporal_tls_{setting}": missing})
    assert f"CLOUDMART_TEMPORAL_TLS_{setting.upper()}: Value error, cannot read {missing}: " in said
    assert "No such file or directory" in said
    said = refusal(**{f"temporal_tls_{setting}": tmp_path})
    assert f"cannot read {tmp_path}: Is a directory" in said


def test_a_file_that_is_not_what_its_setting_names_is_refused_without_its_contents(
    files: tuple[Path, Issued],
) -> None:
    ca, client = files
    said = refusal(temporal_tls_ca=client.key, temporal_tls_key=ca)
    assert (
        f"CLOUDMART_TEMPORAL_TLS_CA: Value error, {client.key} is not a PEM certificate "
        "(no '-----BEGIN CERTIFICATE-----' line)"
    ) in said
    assert f"CLOUDMART_TEMPORAL_TLS_KEY: Value error, {ca} is not a PEM private key" in said
    key = client.key.read_text().splitlines()[1]
    assert key not in said


def test_an_encrypted_private_key_is_refused(tmp_path: Path, files: tuple[Path, Issued]) -> None:
    _, client = files
    key = serialization.load_pem_private_key(client.key.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted-key.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    said = refusal(temporal_tls_cert=client.cert, temporal_tls_key=encrypted)
    assert f"CLOUDMART_TEMPORAL_TLS_KEY: Value error, {encrypted} is encrypted" in said


def test_tls_turned_off_with_tls_settings_or_an_api_key_is_refused(
    files: tuple[Path, Issued],
) -> None:
    ca, _ = files
    said = refusal(temporal_tls=False, temporal_tls_ca=ca)
    assert "CLOUDMART_TEMPORAL_TLS is false but CLOUDMART_TEMPORAL_TLS_CA" in said
    said = refusal(temporal_tls=False, temporal_api_key=API_KEY)
    assert "CLOUDMART_TEMPORAL_API_KEY is set but CLOUDMART_TEMPORAL_TLS is false" in said
    assert API_KEY not in said


def test_the_api_key_never_shows_in_a_dump_but_reaches_child_processes() -> None:
    settings = Settings(temporal_api_key=API_KEY)
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert API_KEY not in shown
        assert "temporal_api_key" in shown
    assert API_KEY not in str(settings.model_dump())
    assert settings_env(settings, {})["CLOUDMART_TEMPORAL_API_KEY"] == API_KEY


@pytest.mark.parametrize("bad", [f"{API_KEY}\n", f"Bearer {API_KEY}", f"{API_KEY}\u00e9"])
def test_an_api_key_that_cannot_be_a_header_is_refused_without_echoing_it(bad: str) -> None:
    said = refusal(temporal_api_key=bad)
    assert "CLOUDMART_TEMPORAL_API_KEY: Value error, must be printable ASCII" in said
    assert API_KEY not in said


def test_the_hint_for_an_unreachable_frontend_names_the_tls_settings_in_play(
    files: tuple[Path, Issued],
) -> None:
    assert "is the dev server running?" in unreachable_hint(Settings())
    over_tls = unreachable_hint(Settings(temporal_tls_ca=files[0]))
    assert "over TLS" in over_tls and "CLOUDMART_TEMPORAL_TLS_CERT" in over_tls


def test_no_other_runtime_code_connects_to_temporal_on_its_own() -> None:
    """Every process connects through ``cloudmart.temporal.connect``, so none misses the TLS
    settings or the API key (the benchmarks' floor connects in clear to a dev server of its
    own, without our converter, on purpose)."""
    root = Path(__file__).parents[2]
    runtime = [root / "worker.py"] + [
        path
        for package in (
            "cloudmart",
            "api",
            "services",
            "activities",
            "workflows",
            "chaos",
            "devstack",
        )
        for path in (root / package).rglob("*.py")
    ]
    connecting = [
        os.path.relpath(path, root) for path in runtime if "Client.connect(" in path.read_text()
    ]
    assert connecting == ["cloudmart/temporal.py"]
