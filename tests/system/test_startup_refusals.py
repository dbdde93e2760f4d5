"""Programs refuse to start, with a clear message and the exit status a script can act on, when
their settings would break something: no payload keys (exit 1), a bad value (exit 2, a line per
problem naming its variable: also TLS files for Temporal that it could not use), customer tokens
required but no secret to check them, or customer tokens off on an address beyond loopback
(exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.auth import check_auth_settings
from cloudmart.settings import Settings
from devstack.processes import API_READY, free_port
from devstack.stack import settings_env
from tests.support import TEST_PAYLOAD_KEYS, start_api
from tests.system.test_deployment import environment
from tests.tls import CertificateAuthority

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize("program", [["-m", "worker"], ["-m", "api"]])
def test_a_process_without_keys_refuses_to_start(program: list[str], tmp_path: Path) -> None:
    env = settings_env(Settings(data_dir=tmp_path), os.environ)
    env["CLOUDMART_PAYLOAD_KEYS"] = ""
    ended = subprocess.run(
        [sys.executable, *program], env=env, capture_output=True, text=True, timeout=60
    )
    assert ended.returncode == 1
    assert "CLOUDMART_PAYLOAD_KEYS is not set" in ended.stderr
    assert "Traceback" not in ended.stderr


@pytest.mark.parametrize("program", ["worker", "api", "devstack"])
def test_a_program_started_with_a_bad_setting_says_which_and_exits_2(
    program: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "CLOUDMART_DATA_DIR": str(tmp_path),
        "CLOUDMART_EVENTS_WINDOW": "0",
        "CLOUDMART_COMPENSATION_STUCK_ATTEMPTS": "many",
    }
    run = subprocess.run(
        [sys.executable, "-m", program],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert "CLOUDMART_EVENTS_WINDOW: Input should be greater than 0 seconds" in run.stderr
    assert "CLOUDMART_COMPENSATION_STUCK_ATTEMPTS: Input should be a valid integer" in run.stderr
    assert list(tmp_path.iterdir()) == []  # refused before it touched anything


@pytest.mark.parametrize("program", ["worker", "api", "devstack"])
@pytest.mark.parametrize("problem", ["cert-without-key", "unreadable-ca"])
def test_a_program_refuses_temporal_tls_it_could_not_use_naming_the_setting(
    program: str, problem: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    client = CertificateAuthority("refusals", tmp_path_factory.mktemp("pki")).issue(
        "worker", server=False
    )
    api_key = "tmprl-never-printed-0123456789"
    tls = {
        "cert-without-key": {"CLOUDMART_TEMPORAL_TLS_CERT": str(client.cert)},
        "unreadable-ca": {"CLOUDMART_TEMPORAL_TLS_CA": str(client.cert.with_name("nowhere.pem"))},
    }[problem]
    env = {
        **os.environ,
        "CLOUDMART_DATA_DIR": str(tmp_path),
        "CLOUDMART_TEMPORAL_API_KEY": api_key,
        **tls,
    }
    run = subprocess.run(
        [sys.executable, "-m", program],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stderr
    said = {
        "cert-without-key": "CLOUDMART_TEMPORAL_TLS_CERT is set without CLOUDMART_TEMPORAL_TLS_KEY",
        "unreadable-ca": "CLOUDMART_TEMPORAL_TLS_CA: Value error, cannot read ",
    }[problem]
    assert said in run.stderr
    assert "Traceback" not in run.stderr
    assert api_key not in run.stdout + run.stderr
    assert list(tmp_path.iterdir()) == []  # refused before it touched anything


def test_the_api_refuses_to_start_requiring_tokens_it_cannot_check(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, require_auth=True, api_port=free_port(), payload_keys=TEST_PAYLOAD_KEYS
    )
    started = subprocess.run(
        [sys.executable, "-m", "api"],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 2
    assert "CLOUDMART_REQUIRE_AUTH is on but CLOUDMART_AUTH_SECRET is not set" in started.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_the_api_refuses_to_listen_beyond_loopback_without_customer_auth(
    host: str, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path, api_host=host, api_port=free_port(), payload_keys=TEST_PAYLOAD_KEYS
    )
    started = subprocess.run(
        [sys.executable, "-m", "api"],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 2, started.stderr
    assert f"CLOUDMART_API_HOST={host!r} listens beyond this machine" in started.stderr
    for what_to_set in ("CLOUDMART_REQUIRE_AUTH=true", "CLOUDMART_ALLOW_OPEN_API=true"):
        assert what_to_set in started.stderr
    assert "Traceback" not in started.stderr
    assert API_READY not in started.stdout + started.stderr  # it never listened


def test_the_api_listens_beyond_loopback_when_told_a_proxy_guards_it(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        api_host="0.0.0.0",
        api_port=free_port(),
        payload_keys=TEST_PAYLOAD_KEYS,
        allow_open_api=True,
    )
    api = start_api(settings)
    try:
        api.wait_ready(30)
        assert f"0.0.0.0:{settings.api_port}" in (api.ready_line or "")
    finally:
        assert api.stop() == 0, api.failure("did not exit 0")


def test_composes_api_listens_on_every_interface_with_customer_auth() -> None:
    env = environment("api")
    settings = Settings(
        **{k.removeprefix("CLOUDMART_").lower(): v for k, v in env.items() if "CLOUDMART_" in k}
    )
    assert settings.api_host == "0.0.0.0" and settings.require_auth
    check_auth_settings(settings)  # what `python -m api` checks before it listens
