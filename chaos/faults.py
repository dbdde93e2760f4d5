"""The faults: workers killed and restarted, the Temporal server killed once, a service database
made unavailable once; and, while returns are running, the return saga's consumers killed
mid-chain and the event store's database made unavailable once. One thread injects them in turn
while the load runs."""

from __future__ import annotations

import random
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Engine, make_url, text

from devstack.processes import StackError
from devstack.stack import DevStack

OUTAGE_SERVICES = ("inventory", "payment", "shipping")


@contextmanager
def database_outage(url: str, admin: Engine | None) -> Iterator[None]:
    """PostgreSQL: refuse new connections and end the open ones. SQLite: hold its write lock."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        assert admin is not None, "a PostgreSQL outage needs the admin connection"
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{parsed.database}" ALLOW_CONNECTIONS false'))
            connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db"),
                {"db": parsed.database},
            )
        try:
            yield
        finally:
            with admin.connect() as connection:
                connection.execute(
                    text(f'ALTER DATABASE "{parsed.database}" ALLOW_CONNECTIONS true')
                )
    else:
        assert parsed.database is not None
        blocker = sqlite3.connect(parsed.database, isolation_level=None, timeout=30)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()


@dataclass
class Faults:
    """Until stopped: a worker killed every ``kill_every`` seconds (restarted at once), one
    database outage once a quarter of the orders have ended (``progress``), one Temporal kill at
    half; as soon as returns are running (``returning``), a process running the return
    consumers (``return_workers``) is killed and the event store's database made unavailable
    once, and while they run every kill goes to such a process; whatever was not injected yet
    (a worker kill too) is injected before it stops. One fault at a time: a worker that starts
    while its database is down can exit (it migrates before it polls)."""

    stack: DevStack
    kill_every: float
    outage_seconds: float
    temporal_down: float
    """How long the Temporal server stays dead before its restart: clients meet it down."""
    progress: Callable[[], float]
    rng: random.Random
    admin: Engine | None = None
    returning: Callable[[], int] = lambda: 0
    """How many returns are running (requested, not yet ended or stuck)."""
    return_workers: tuple[str, ...] = ()
    """The processes running the return saga's consumers."""
    kills: Counter[str] = field(default_factory=Counter)
    kills_mid_return: int = 0
    """Kills of a return consumer's process while returns were running."""
    event_store_outage: float | None = None
    """How long the event store's database was unavailable (None: not yet)."""
    returns_during_outage: int = 0
    kill_statuses: Counter[int] = field(default_factory=Counter)
    temporal_restarts: int = 0
    outage: tuple[str, float] | None = None
    """The database made unavailable, and for how many seconds."""
    unexpected: list[str] = field(default_factory=list)
    """Processes that died without being killed, or would not restart."""
    log: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _started: float = field(default_factory=time.monotonic)

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="faults", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        next_kill = time.monotonic() + self.kill_every
        while not self._stop.wait(0.1):
            self._check_alive()
            if self.outage is None and self.progress() >= 0.25:
                self._database_outage()
            elif self.temporal_restarts == 0 and self.progress() >= 0.5:
                self._kill_temporal()
            elif self.return_workers and self.returning() and not self.kills_mid_return:
                self._kill_worker(self.rng.choice(self.return_workers))  # mid-chain, at once
                self.kills_mid_return += 1
            elif self.return_workers and self.returning() and self.event_store_outage is None:
                self._event_store_outage()
            elif time.monotonic() >= next_kill:
                if self.return_workers and self.returning():
                    self._kill_worker(self.rng.choice(self.return_workers))
                    self.kills_mid_return += 1
                else:
                    self._kill_worker(self.rng.choice(self.stack.worker_names))
                next_kill = time.monotonic() + self.kill_every
        if self.outage is None:
            self._database_outage()
        if self.temporal_restarts == 0:
            self._kill_temporal()
        if self.return_workers and self.event_store_outage is None:
            self._event_store_outage()
        saga_worker = self.stack.worker_names[0]  # the one running the saga: at least once
        if not self.kills[saga_worker]:
            self._kill_worker(saga_worker)
        self._check_alive()

    def _note(self, what: str) -> None:
        self.log.append(f"{time.monotonic() - self._started:7.1f}s {what}")

    def _kill(self, name: str, down: float = 0) -> None:
        """SIGKILL, ``down`` seconds dead, then restarted and ready."""
        killed = time.monotonic()
        status = self.stack.kill(name)
        self.kills[name] += 1
        self.kill_statuses[status] += 1
        if status != -signal.SIGKILL:
            self.unexpected.append(f"{name} killed with SIGKILL reported status {status}")
        time.sleep(down)
        self._restart(name)
        self._note(
            f"SIGKILL {name} (status {status}), ready {time.monotonic() - killed:.1f}s later"
        )

    def _restart(self, name: str) -> None:
        for attempt in range(1, 4):
            try:
                self.stack.start_process(name)
                return
            except StackError as err:
                self.stack.processes.pop(name, None)
                self.unexpected.append(f"{name} restart attempt {attempt} failed: {err}")
        raise RuntimeError(f"{name} would not restart; see the report")

    def _kill_worker(self, name: str) -> None:
        self._kill(name)

    def _kill_temporal(self) -> None:
        self._kill("temporal", self.temporal_down)  # restarted on the same --db-filename
        self.temporal_restarts += 1

    def _database_outage(self) -> None:
        service = self.rng.choice(OUTAGE_SERVICES)
        url = self.stack.settings.db_url(service)
        started = time.monotonic()
        self._note(f"{service} database unavailable")
        with database_outage(url, self.admin):
            time.sleep(self.outage_seconds)  # the whole outage, even if the load ends meanwhile
        self.outage = (service, time.monotonic() - started)
        self._note(f"{service} database back")

    def _event_store_outage(self) -> None:
        url = self.stack.settings.db_url("event_store")
        started = time.monotonic()
        self.returns_during_outage = self.returning()
        self._note(
            f"event_store database unavailable ({self.returns_during_outage} returns running)"
        )
        with database_outage(url, self.admin):
            time.sleep(self.outage_seconds)
        self.event_store_outage = time.monotonic() - started
        self._note("event_store database back")

    def _check_alive(self) -> None:
        """A process that died on its own is a finding; it is restarted so the run goes on."""
        dead = self.stack.first_dead()
        while dead is not None:
            self.unexpected.append(
                dead.failure(f"died on its own (status {dead.popen.returncode})")
            )
            self.stack.processes.pop(dead.name)
            self._restart(dead.name)
            self._note(f"{dead.name} restarted after dying on its own")
            dead = self.stack.first_dead()
