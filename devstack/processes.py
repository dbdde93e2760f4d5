"""Child processes of the dev stack: started in their own process group, their output prefixed
and forwarded, ready when they print a marker, stopped with SIGTERM (then SIGKILL), and, for
workers, restarted after a crash with a growing delay (:class:`Backoff`)."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


class StackError(RuntimeError):
    """The stack could not start; the message says what to do."""


API_READY = "Uvicorn running on"
"""What ``python -m api`` prints once its socket listens. uvicorn logs "Application startup
complete" when the app's lifespan has started, before it binds the port: a client that
connected on that line could be refused."""


@dataclass
class ManagedProcess:
    """A child process in its own process group, its output prefixed and forwarded."""

    name: str
    popen: subprocess.Popen[bytes]
    ready_marker: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    ready_line: str | None = None
    """The line of output that had the ready marker in it."""
    tail: list[str] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        name: str,
        command: list[str],
        *,
        env: Mapping[str, str],
        output: IO[str] | None,
        ready_marker: str | None = None,
    ) -> ManagedProcess:
        popen = subprocess.Popen(
            command,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the stack, which stops children in order
        )
        process = cls(name, popen, ready_marker)
        threading.Thread(target=process._forward, args=(output,), daemon=True).start()
        return process

    def _forward(self, output: IO[str] | None) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.tail = [*self.tail[-40:], line]
            if self.ready_marker and self.ready_marker in line and not self.ready.is_set():
                self.ready_line = line
                self.ready.set()
            if output is not None:
                print(f"[{self.name}] {line}", file=output, flush=True)

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.1):
            if not self.running:
                raise StackError(self.failure(f"exited with status {self.popen.returncode}"))
            if time.monotonic() > deadline:
                raise StackError(self.failure(f"not ready after {timeout:.0f}s"))

    def failure(self, what: str) -> str:
        return f"{self.name} {what}; its last output:\n  " + "\n  ".join(self.tail[-15:])

    def signal(self, signum: int) -> None:
        if self.running:
            os.killpg(self.popen.pid, signum)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            return self.popen.wait()


@dataclass
class Backoff:
    """How long `make up` waits before restarting a process that died: ``first`` seconds, then
    twice as long after each death, up to ``cap``; back to ``first`` once a restarted process
    has stayed up ``stable`` seconds. A worker that crashes at once on every start (a bad
    setting, a broken import) is then retried twice a minute, not in a tight loop."""

    first: float = 1.0
    cap: float = 30.0
    stable: float = 60.0
    deaths: int = 0
    started_at: float = field(default_factory=time.monotonic)

    def next_delay(self, now: float) -> float:
        """The wait before the next restart of a process that died at ``now``."""
        if now - self.started_at >= self.stable:
            self.deaths = 0
        delay = min(self.cap, self.first * 2**self.deaths)
        self.deaths += 1
        return delay

    def restarted(self, now: float) -> None:
        self.started_at = now


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 10_000
ENOUGH_PORTS = 1_000
_chooser = random.SystemRandom()  # not the seeded one: parallel test processes share a seed


def _ports() -> range:
    """Where we choose ports: below the kernel's ephemeral range. The dev server asks the kernel
    for any free port for each of its internal services; from the ephemeral range it could get
    the port we chose for its frontend, released and not yet bound (its frontend then fails, or
    it crashes)."""
    try:
        low, high = (int(bound) for bound in EPHEMERAL_RANGE.read_text().split()[:2])
    except (OSError, ValueError):
        low, high = 32_768, 60_999  # Linux's default
    if low - LOWEST_PORT >= ENOUGH_PORTS:
        return range(LOWEST_PORT, low)
    if 65_535 - high >= ENOUGH_PORTS:
        return range(high + 1, 65_536)
    return range(LOWEST_PORT, 65_536)  # no room outside it: the race is back, if rarely


def free_port() -> int:
    """A port free now on the loopback interface, outside the kernel's ephemeral range."""
    return free_port_range(1)


def free_port_range(count: int) -> int:
    """The first of ``count`` consecutive ports free now (for a stack's metrics ports)."""
    ports = _ports()
    while True:
        first = _chooser.randrange(ports.start, ports.stop - count + 1)
        if all(port_is_free(first + i) for i in range(count)):
            return first


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
