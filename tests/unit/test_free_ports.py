"""The ports throwaway stacks choose (devstack/processes.py): free, and outside the range the
kernel hands out to whoever asks for any port, which the dev server does for its internal
services (with a port of ours there, its frontend could lose its port to its own worker service)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from devstack import processes
from devstack.processes import free_port, free_port_range


def ephemeral_low() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def test_a_free_port_is_bindable_and_below_the_kernels_ephemeral_range() -> None:
    for _ in range(200):
        port = free_port()
        assert processes.LOWEST_PORT <= port < ephemeral_low()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_a_range_is_consecutive_free_ports_below_the_ephemeral_range() -> None:
    first = free_port_range(4)
    assert first + 4 <= ephemeral_low()
    socks = [socket.socket() for _ in range(4)]
    try:
        for i, sock in enumerate(socks):
            sock.bind(("127.0.0.1", first + i))
    finally:
        for sock in socks:
            sock.close()


def listening_beside_a_free_port() -> socket.socket:
    """A socket listening on a port whose next one is free."""
    while True:
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        if processes.port_is_free(taken.getsockname()[1] + 1):
            return taken
        taken.close()


def test_a_port_in_use_is_never_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    with listening_beside_a_free_port() as taken:
        port = taken.getsockname()[1]
        monkeypatch.setattr(processes, "_ports", lambda: range(port, port + 2))
        assert {free_port() for _ in range(50)} == {port + 1}


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ("32768\t60999\n", range(10_000, 32_768)),
        ("1024 40000", range(40_001, 65_536)),  # no room below: above it
        ("1024 65000", range(10_000, 65_536)),  # no room either side: anywhere
        ("", range(10_000, 32_768)),  # unreadable: Linux's default
    ],
)
def test_ports_are_chosen_outside_the_ephemeral_range_wherever_it_is(
    configured: str, expected: range, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setting = tmp_path / "ip_local_port_range"
    setting.write_text(configured)
    monkeypatch.setattr(processes, "EPHEMERAL_RANGE", setting)
    assert processes._ports() == expected
