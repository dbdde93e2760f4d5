"""What `make up` promises before anything runs: the documented server flags, clear errors."""

from __future__ import annotations

import os
import signal
import socket
import stat
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from cloudmart.credentials import AUTH_SECRET_FILE, OPERATOR_TOKEN_FILE, with_dev_credentials
from cloudmart.settings import Settings
from devstack import stack as devstack
from devstack.processes import Backoff, ManagedProcess, StackError
from devstack.stack import (
    DevStack,
    banner,
    settings_env,
    temporal_server_command,
    throwaway_settings,
)
from tests.support import start_api


def test_the_dev_server_gets_the_documented_flags(tmp_path: Path) -> None:
    command = " ".join(
        temporal_server_command(port=7233, ui_port=8233, db_file=tmp_path / "temporal.db")
    )
    for flag in (
        f"--db-filename {tmp_path / 'temporal.db'}",
        "--ui-port 8233",
        "--dynamic-config-value history.transferProcessorMaxPollRPS=1000",
        "--sqlite-pragma journal_mode=wal",
        "--sqlite-pragma synchronous=normal",
        "--search-attribute OrderStatus=Keyword",
        "--search-attribute CustomerId=Keyword",
    ):
        assert flag in command
    assert "OrderTotal" not in command  # an amount: never a search attribute, stored in clear


def test_the_web_ui_is_pointed_at_the_codec_server_and_a_headless_server_is_not() -> None:
    with_ui = temporal_server_command(
        port=7233, ui_port=8233, db_file=None, codec_endpoint="http://127.0.0.1:8000/codec"
    )
    assert " --ui-codec-endpoint http://127.0.0.1:8000/codec" in " ".join(with_ui)
    headless = temporal_server_command(
        port=7233, ui_port=None, db_file=None, codec_endpoint="http://127.0.0.1:8000/codec"
    )
    assert "--ui-codec-endpoint" not in headless


def test_a_busy_port_is_a_clear_error_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = throwaway_settings(tmp_path, api_port=port)
        stack = DevStack(settings, settings_env(settings), output=None)
        with pytest.raises(StackError, match=f"port {port} for the API .* is in use"):
            stack.start()
    assert stack.processes == {}


@pytest.mark.parametrize("existing", [False, True], ids=["new", "left open by an older stack"])
def test_the_data_directory_is_its_owners_alone(tmp_path: Path, existing: bool) -> None:
    data_dir = tmp_path / "data"
    if existing:
        data_dir.mkdir(mode=0o755)
    with socket.socket() as busy:  # start() stops at the busy port, after making the directory
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        settings = throwaway_settings(data_dir, api_port=busy.getsockname()[1])
        with pytest.raises(StackError):
            DevStack(settings, settings_env(settings), output=None).start()
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700


# --- the operator token `make up` uses ----------------------------------------------------------


def test_make_up_generates_an_operator_token_once_and_keeps_it_private(tmp_path: Path) -> None:
    first = with_dev_credentials(Settings(data_dir=tmp_path, operator_token=None, auth_secret=None))
    assert first.operator_token is not None and first.auth_secret is not None
    token = first.operator_token.get_secret_value()
    assert len(token) >= 40 and token != first.auth_secret.get_secret_value()
    for name in (OPERATOR_TOKEN_FILE, AUTH_SECRET_FILE):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert (tmp_path / OPERATOR_TOKEN_FILE).read_text().strip() == token

    again = with_dev_credentials(Settings(data_dir=tmp_path, operator_token=None, auth_secret=None))
    assert again.operator_token == first.operator_token
    assert again.auth_secret == first.auth_secret
    # The API gets them through its environment, in clear (a dump would mask them).
    env = settings_env(again)
    assert env["CLOUDMART_OPERATOR_TOKEN"] == token
    assert env["CLOUDMART_AUTH_SECRET"] == first.auth_secret.get_secret_value()


def test_a_configured_operator_token_wins_and_nothing_is_stored(tmp_path: Path) -> None:
    chosen = "o" * 32
    settings = with_dev_credentials(
        Settings(data_dir=tmp_path, operator_token=chosen, auth_secret="a" * 32)
    )
    assert settings.operator_token is not None
    assert settings.operator_token.get_secret_value() == chosen
    assert not (tmp_path / OPERATOR_TOKEN_FILE).exists()
    assert not (tmp_path / AUTH_SECRET_FILE).exists()
    text = banner(DevStack(settings, {}, output=None))
    assert chosen not in text
    assert "Operator token  the one in CLOUDMART_OPERATOR_TOKEN" in text
    assert '-H "Authorization: Bearer $CLOUDMART_OPERATOR_TOKEN"' in text


def test_the_banner_says_where_the_operator_token_is_and_how_to_use_it_never_what_it_is(
    tmp_path: Path,
) -> None:
    """Issue 21: the banner printed the token itself, into terminals' scrollback and logs."""
    settings = with_dev_credentials(
        throwaway_settings(tmp_path, operator_token=None, auth_secret=None)
    )
    assert settings.operator_token is not None
    token = settings.operator_token.get_secret_value()
    stack = DevStack(settings, settings_env(settings), output=None)
    text = banner(stack)
    assert token not in text
    stored = tmp_path.resolve() / OPERATOR_TOKEN_FILE
    assert f"  Operator token  kept in {stored}\n" in text
    assert f"curl -X POST {stack.api_url}/projections/rebuild" in text
    assert f'-H "Authorization: Bearer $(cat {stored})"' in text
    assert f"sign in with it at {stack.codec_url}/session" in text
    assert f"  Console         {stack.api_url}/console " in text
    assert f"sign in with it at {stack.api_url}/console/signin" in text
    assert "Customer tokens off" in text
    required = banner(DevStack(settings.model_copy(update={"require_auth": True}), {}))
    assert "make token CUSTOMER=<customer id>" in required


@pytest.mark.devstack
def test_make_up_keeps_the_operator_token_the_api_accepts_where_its_banner_says(
    tmp_path: Path,
) -> None:
    settings = throwaway_settings(
        tmp_path, operator_token=None, auth_secret=None, task_queue_prefix="up-token"
    )
    up = ManagedProcess.start(
        "make up",
        [sys.executable, "-m", "devstack"],
        env=settings_env(settings),
        output=None,
        ready_marker="Ctrl-C stops everything",
    )
    try:
        up.wait_ready(120)
        [line] = [line for line in up.tail if "Operator token  kept in " in line]
        path = Path(line.split("Operator token  kept in ")[1])
        token = path.read_text().strip()
        assert path == tmp_path.resolve() / OPERATOR_TOKEN_FILE
        assert not any(token in line for line in up.tail)
        url = f"http://127.0.0.1:{settings.api_port}/orders/{uuid.uuid4()}/payment-review"
        decision = {"approved": True}
        with httpx.Client(timeout=15) as api:
            assert api.post(url, json=decision).status_code == 401
            wrong = {"Authorization": "Bearer " + "w" * 43}
            assert api.post(url, json=decision, headers=wrong).status_code == 403
            passed = api.post(url, json=decision, headers={"Authorization": f"Bearer {token}"})
            assert passed.status_code == 404  # past the token, to the order itself
    finally:
        assert up.stop(60) == 0, up.failure("did not stop cleanly")


def test_the_api_counts_as_ready_once_it_listens(tmp_path: Path) -> None:
    """uvicorn logs "Application startup complete" before it binds its port: a stack (or a test)
    that connected on that line could be refused. It waits for the line that names the address."""
    settings = throwaway_settings(tmp_path)
    api = start_api(settings)
    try:
        api.wait_ready(30)
        assert api.ready_line is not None
        assert f"http://127.0.0.1:{settings.api_port}" in api.ready_line
        socket.create_connection(("127.0.0.1", settings.api_port), timeout=5).close()  # no retry
    finally:
        assert api.stop() == 0, api.failure("did not exit 0")


def _server_that_fails_first(
    monkeypatch: pytest.MonkeyPatch, first_words: str
) -> list[dict[str, object]]:
    """The dev server's command, except that its first start prints ``first_words`` and exits."""
    real = devstack.temporal_server_command
    calls: list[dict[str, object]] = []

    def command(**kwargs: object) -> list[str]:
        calls.append(kwargs)
        if len(calls) == 1:
            return [sys.executable, "-c", f"print({first_words!r}); raise SystemExit(1)"]
        return real(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(devstack, "temporal_server_command", command)
    return calls


def test_a_dev_server_that_lost_a_port_race_is_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _server_that_fails_first(
        monkeypatch, "failed listening for HTTP API on 127.0.0.1:1: bind: address already in use"
    )
    settings = throwaway_settings(tmp_path)
    (settings.data_dir / "logs").mkdir(parents=True)
    stack = DevStack(settings, settings_env(settings), output=None, persist=False)
    try:
        stack.start_process("temporal")
        assert len(calls) == 2
        assert stack.processes["temporal"].running
    finally:
        stack.stop()


def test_a_dev_server_that_failed_otherwise_is_not_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _server_that_fails_first(monkeypatch, "Error: unable to open database file")
    settings = throwaway_settings(tmp_path)
    (settings.data_dir / "logs").mkdir(parents=True)
    stack = DevStack(settings, settings_env(settings), output=None, persist=False)
    try:
        with pytest.raises(StackError, match="did not start"):
            stack.start_process("temporal")
        assert len(calls) == 1
    finally:
        stack.stop()


# --- make up's supervisor ------------------------------------------------------------------------


def test_restarts_back_off_and_forgive_a_worker_that_stayed_up() -> None:
    backoff = Backoff(first=1, cap=30, stable=60, started_at=0)
    assert [backoff.next_delay(now=1) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    backoff.restarted(now=100)
    assert backoff.next_delay(now=130) == 30  # died again within a minute: still backing off
    backoff.restarted(now=200)
    assert backoff.next_delay(now=260) == 1  # up for a minute: a fresh start


def _children(pid: int) -> dict[str, int]:
    """The command lines of ``pid``'s child processes, to their pids."""
    found: dict[str, int] = {}
    for thread in Path(f"/proc/{pid}/task").iterdir():
        for child in (thread / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            found[cmdline] = int(child)
    return found


def _wait_for(log: Path, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = log.read_text()
        if text in content:
            return content
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared in make up's output:\n{log.read_text()[-3000:]}")


@pytest.mark.devstack
def test_make_up_restarts_a_crashed_worker_while_the_api_stays_up(tmp_path: Path) -> None:
    """Issue 21: a dead worker used to stop the whole stack. Now the supervisor restarts it
    (saying so), the API answers throughout, and an order placed meanwhile completes on the
    new worker. Temporal or the API dying still stops everything, with status 1."""
    settings = throwaway_settings(tmp_path / "data", task_queue_prefix="up-restart")
    log = tmp_path / "make-up.log"
    with log.open("w") as output:
        up = ManagedProcess.start(
            "make up",
            [sys.executable, "-m", "devstack"],
            env=settings_env(settings),
            output=output,
            ready_marker="Ctrl-C stops everything",
        )
        try:
            up.wait_ready(120)
            children = _children(up.popen.pid)
            [worker] = [pid for cmd, pid in children.items() if "worker --service saga" in cmd]
            [api] = [pid for cmd, pid in children.items() if "-m api" in cmd]
            os.kill(worker, signal.SIGKILL)  # a crash, not a stop

            base = f"http://127.0.0.1:{settings.api_port}"
            with httpx.Client(base_url=base, timeout=40) as client:
                _wait_for(log, "worker exited with status -9; restarting it in 1s", 10)
                assert client.get("/products").status_code == 200  # the API is still up
                body = {
                    "customer_id": "c-restart",
                    "items": [{"sku": "MOUSE-ERGO-01", "quantity": 1}],
                    "payment_token": "tok_ok",
                    "shipping_address": {
                        **{"name": "Ada Lovelace", "line1": "Hauptstr. 1", "city": "Berlin"},
                        **{"postal_code": "10115", "country": "DE"},
                    },
                }
                placed = client.post("/orders?wait=30", json=body)
                assert placed.status_code in (200, 202), placed.text
                _wait_for(log, "[supervisor] worker restarted", 60)
                order = client.get(f"/orders/{placed.json()['order_id']}").json()
                deadline = time.monotonic() + 30
                while order["status"] != "COMPLETED" and time.monotonic() < deadline:
                    time.sleep(0.2)
                    order = client.get(f"/orders/{placed.json()['order_id']}").json()
                assert order["status"] == "COMPLETED", order
            assert up.running and api in _children(up.popen.pid).values()  # never restarted

            os.kill(api, signal.SIGKILL)  # the stack cannot do without its API: it stops
            assert up.popen.wait(60) == 1
            assert "api stopped unexpectedly" in log.read_text()
        finally:
            up.stop(60)
