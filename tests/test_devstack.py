"""What `make up` promises before anything runs: the documented server flags, clear errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cloudmart.devstack import (
    DevStack,
    StackError,
    settings_env,
    temporal_server_command,
    throwaway_settings,
)


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
        "--search-attribute OrderTotal=Int",
    ):
        assert flag in command


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
