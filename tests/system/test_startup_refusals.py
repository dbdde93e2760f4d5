"""Programs refuse to start, with a clear message and the exit status a script can act on, when
their settings would break something: no payload keys (exit 1), a bad value (exit 2, a line per
problem naming its variable), customer tokens required but no secret to check them (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cloudmart.settings import Settings
from devstack.processes import free_port
from devstack.stack import settings_env
from tests.support import TEST_PAYLOAD_KEYS

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
