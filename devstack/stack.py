"""The dev stack behind ``make up``: Temporal's dev server with its Web UI, the workers, the API.

State persists under the data directory: ``temporal.db`` for Temporal, one SQLite file per
service, ``logs/``, and ``payload-keys`` (the payload encryption key, generated on first start
when ``CLOUDMART_PAYLOAD_KEYS`` is not set). Ctrl-C stops the API, then the workers, then
Temporal, and exits 0. The tests, the chaos run and the benchmarks start the same stack, with
the same server flags, on free ports.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pydantic import SecretStr
from sqlalchemy import Engine, create_engine, make_url, text

from cloudmart.codec import new_key_entry, parse_payload_keys
from cloudmart.contracts.saga import SEARCH_ATTRIBUTES
from cloudmart.credentials import OPERATOR_TOKEN_FILE, read_secret
from cloudmart.settings import DATABASES, Settings
from devstack.binaries import find_binary
from devstack.processes import (
    API_READY,
    Backoff,
    ManagedProcess,
    StackError,
    free_port,
    port_is_free,
)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "0.0.0.0", "::", "::1", "")
"""API addresses that the browser on this machine reaches as ``localhost``."""

WORKER_ROLES = (
    "orchestrator",
    "customers",
    "inventory",
    "payment",
    "shipping",
    "projector",
    "loyalty",
    "shipping-eraser",
    "shipping-returns",
    "inventory-returns",
    "payment-returns",
    "loyalty-returns",
)

RETENTION = "720h"
"""Closed sagas stay visible (and their Idempotency-Keys binding) for 30 days, not the dev
server's default of one day."""

SERVER_TUNING = (
    # The history service's transfer-queue reader is rate-limited to 20 polls/s by default:
    # every workflow and activity task then waits to be dispatched (docs/performance.md,
    # "The dev server's flags").
    "--dynamic-config-value",
    "history.transferProcessorMaxPollRPS=1000",
    # WAL with synchronous=NORMAL: commits no longer wait for fsync; durable across process
    # crashes (what the dev stack must survive), not across power loss.
    "--sqlite-pragma",
    "journal_mode=wal",
    "--sqlite-pragma",
    "synchronous=normal",
)


def temporal_server_command(
    *,
    port: int,
    ui_port: int | None,
    db_file: Path | None,
    log_level: str = "warn",
    codec_endpoint: str | None = None,
    metrics_port: int | None = None,
) -> list[str]:
    """The dev server's command line: the same flags for `make up`, tests and benchmarks."""
    command = [
        find_binary("temporal"),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        log_level,
        *SERVER_TUNING,
    ]
    for key in SEARCH_ATTRIBUTES:
        command += ["--search-attribute", f"{key.name}={key.indexed_value_type.name.title()}"]
    command += ["--ui-port", str(ui_port)] if ui_port else ["--headless"]
    if ui_port and codec_endpoint:
        # The browser calls it to show decrypted payloads (the API's codec server).
        command += ["--ui-codec-endpoint", codec_endpoint]
    if db_file is not None:
        command += ["--db-filename", str(db_file)]
    if metrics_port:
        command += ["--metrics-port", str(metrics_port)]  # the server's own, for Prometheus
    return command


def settings_env(settings: Settings, base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """An environment in which child processes read exactly ``settings``."""
    env = {k: v for k, v in base.items() if not k.startswith("CLOUDMART_")}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        secret = getattr(settings, name)
        if isinstance(secret, SecretStr):  # dumped masked; the children need the real value
            value = secret.get_secret_value()
        if isinstance(value, list):
            value = ",".join(value)
        env[f"CLOUDMART_{name.upper()}"] = str(value)
    return env | secrets_env(settings)  # secrets are dumped as "**********"


def secrets_env(settings: Settings) -> dict[str, str]:
    """The operator token and auth secret as child processes read them (where set)."""
    env = {}
    for name in ("operator_token", "auth_secret"):
        secret: SecretStr | None = getattr(settings, name)
        if secret is not None:
            env[f"CLOUDMART_{name.upper()}"] = secret.get_secret_value()
    return env


PAYLOAD_KEYS_FILE = "payload-keys"


def with_dev_payload_keys(settings: Settings) -> Settings:
    """``settings`` with payload keys: the configured ones, else the dev stack's own, generated
    into ``<data_dir>/payload-keys`` (owner-only) on first use and reused after, so that every
    process of the stack, and every restart, encrypts and decrypts with the same key."""
    if settings.payload_key_ring:
        return settings
    path = settings.data_dir / PAYLOAD_KEYS_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(new_key_entry("dev-1") + "\n")
    keys = path.read_text().strip()
    try:
        parse_payload_keys(keys)
    except ValueError as err:
        raise StackError(f"{path}: {err} (fix it, or delete it to generate a new key)") from None
    return settings.model_copy(update={"payload_keys": SecretStr(keys)})


def throwaway_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for a stack of its own (tests, benchmarks): free ports, no Web UI, SQLite
    databases under ``data_dir`` whatever ``CLOUDMART_*_DB_URL`` says, and a fresh operator
    token and customer-token secret."""
    defaults: dict[str, object] = {
        "data_dir": data_dir,
        "operator_token": secrets.token_urlsafe(32),
        "auth_secret": secrets.token_urlsafe(32),
        "temporal_address": f"127.0.0.1:{free_port()}",
        "temporal_ui_port": 0,
        "api_port": free_port(),
        "metrics_port": 0,  # stacks side by side would want the same ports; tests choose theirs
        **{f"{database}_db_url": "" for database in DATABASES},
    }
    return with_dev_payload_keys(Settings(**{**defaults, **overrides}))  # type: ignore[arg-type]


@contextmanager
def postgres_databases(admin_url: str, *, prefix: str) -> Iterator[tuple[Engine, dict[str, str]]]:
    """Service databases of a run's own on a PostgreSQL server (``admin_url`` may create
    databases), as ``<service>_db_url`` settings; dropped afterwards, connections and all."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    prefix = f"{prefix}_{uuid.uuid4().hex[:8]}"
    base = make_url(admin_url)
    names = [f"{prefix}_{database}" for database in DATABASES]
    try:
        with admin.connect() as connection:
            for name in names:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield (
            admin,
            {
                f"{database}_db_url": base.set(database=name).render_as_string(hide_password=False)
                for database, name in zip(DATABASES, names, strict=True)
            },
        )
    finally:
        with admin.connect() as connection:
            for name in names:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


TEMPORAL_START_ATTEMPTS = 3
"""The dev server picks its HTTP API's port itself, a random free one, and another process can
take it before the server binds it (seen in CI with several stacks starting at once): it then
exits at once, and is started again."""


def _lost_a_port_race(temporal: ManagedProcess, port: int) -> bool:
    """Whether ``temporal`` exited because a port was taken that was not its gRPC port (which
    is ours to choose, and checked before the start), so that starting again can succeed."""
    if temporal.running:
        return False
    deadline = time.monotonic() + 2  # its last lines may still be on their way to the tail
    while time.monotonic() < deadline:
        if any("address already in use" in line for line in temporal.tail):
            return port_is_free(port)
        time.sleep(0.05)
    return False


def _port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


@dataclass
class DevStack:
    """Temporal dev server + workers + API, configured entirely by ``settings``."""

    settings: Settings
    env: dict[str, str]
    output: IO[str] | None = sys.stdout
    persist: bool = True
    """Keep Temporal's state in ``<data_dir>/temporal.db`` (False: in memory, for tests)."""
    split: bool = False
    """One worker process per role (orchestrator, customers, inventory, payment, shipping,
    projector, loyalty), as production runs them, instead of one process hosting them all."""
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    _temporal_log: IO[str] | None = None
    _backoffs: dict[str, Backoff] = field(default_factory=dict)
    _restart_at: dict[str, float] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    @property
    def ui_url(self) -> str:
        return f"http://localhost:{self.settings.temporal_ui_port}"

    @property
    def codec_url(self) -> str:
        """The API's codec server, as the browser showing the Web UI reaches it: on this
        machine, by the UI's own host name (``ui_url``), so that the UI's page and the API are
        the same site and the browser sends the codec session's SameSite=Strict cookie."""
        host = self.settings.api_host
        host = "localhost" if host in LOCAL_HOSTS else host
        return f"http://{host}:{self.settings.api_port}/codec"

    def start(self) -> None:
        # The stack's own directory: its secrets, keys, databases and logs are the owner's alone.
        self.settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.settings.data_dir.chmod(0o700)
        (self.settings.data_dir / "logs").mkdir(exist_ok=True)
        self.settings = with_dev_payload_keys(self.settings)
        self.env["CLOUDMART_PAYLOAD_KEYS"] = self.settings.payload_keys.get_secret_value()
        self._check_ports()
        for name in ("temporal", *self.worker_names, "api"):
            self.start_process(name)

    @property
    def worker_names(self) -> tuple[str, ...]:
        """Split: a process per role. Otherwise two: ``worker`` runs the saga and every
        service's steps; ``worker-subscribers`` the read side, which follows the event store
        (in the saga's process, its Python held the GIL that sagas wait for: worker.py)."""
        if self.split:
            return tuple(f"worker-{role}" for role in WORKER_ROLES)
        return ("worker", "worker-subscribers")

    def start_process(self, name: str) -> None:
        """Start (or restart) one of the stack's processes and wait until it is ready."""
        if name == "temporal":
            self._start_temporal()
        elif name.startswith("worker"):
            role = name.removeprefix("worker-") if name != "worker" else "saga"
            worker = self._python(name, ["-m", "worker", "--service", role], "worker ready")
            worker.wait_ready(60)
        else:
            self._python("api", ["-m", "api"], API_READY).wait_ready(30)

    def kill(self, name: str) -> int:
        """SIGKILL one process (as a crash would) and return its status."""
        process = self.processes.pop(name)
        process.signal(signal.SIGKILL)
        return process.popen.wait()

    def _start_temporal(self) -> None:
        data_dir = self.settings.data_dir.resolve()
        if self._temporal_log is None:
            self._temporal_log = (data_dir / "logs" / "temporal.log").open("a")
        port = _port_of(self.settings.temporal_address)
        for attempt in range(1, TEMPORAL_START_ATTEMPTS + 1):
            temporal = ManagedProcess.start(
                "temporal",
                temporal_server_command(
                    port=port,
                    ui_port=self.settings.temporal_ui_port or None,
                    db_file=data_dir / "temporal.db" if self.persist else None,
                    codec_endpoint=self.codec_url,
                    metrics_port=self.metrics_ports.get("temporal"),
                ),
                env=self.env,
                output=self._temporal_log,
            )
            self.processes["temporal"] = temporal
            try:
                self._wait_for_temporal(temporal, f"127.0.0.1:{port}")
                return
            except StackError:
                if attempt == TEMPORAL_START_ATTEMPTS or not _lost_a_port_race(temporal, port):
                    raise

    @property
    def metrics_ports(self) -> dict[str, int]:
        """Where each process serves its metrics: from CLOUDMART_METRICS_PORT on, the API, each
        worker process, then the dev server (none when that setting is 0)."""
        base = self.settings.metrics_port
        if not base:
            return {}
        names = ("api", *self.worker_names, "temporal")
        return {name: base + offset for offset, name in enumerate(names)}

    def _python(self, name: str, args: list[str], ready: str) -> ManagedProcess:
        env = dict(self.env)
        env.pop("CLOUDMART_METRICS_ADDRESS", None)  # each process its own, or none
        if name in self.metrics_ports:
            env["CLOUDMART_METRICS_ADDRESS"] = f"127.0.0.1:{self.metrics_ports[name]}"
        process = ManagedProcess.start(
            name, [sys.executable, *args], env=env, output=self.output, ready_marker=ready
        )
        self.processes[name] = process
        return process

    def _check_ports(self) -> None:
        wanted = {
            "Temporal (CLOUDMART_TEMPORAL_ADDRESS)": _port_of(self.settings.temporal_address),
            "the API (CLOUDMART_API_PORT)": self.settings.api_port,
        }
        if self.settings.temporal_ui_port:
            wanted["the Web UI (CLOUDMART_TEMPORAL_UI_PORT)"] = self.settings.temporal_ui_port
        for name, port in self.metrics_ports.items():
            wanted[f"{name}'s metrics (CLOUDMART_METRICS_PORT)"] = port
        for what, port in wanted.items():
            if not port_is_free(port):
                raise StackError(
                    f"port {port} for {what} is in use (is another `make up` running?); "
                    "stop it or choose another port with that setting"
                )

    def _wait_for_temporal(self, temporal: ManagedProcess, address: str) -> None:
        cli = find_binary("temporal")
        deadline = time.monotonic() + 60
        while True:
            health = subprocess.run(
                [cli, "operator", "cluster", "health", "--address", address],
                capture_output=True,
                text=True,
            )
            if "SERVING" in health.stdout:
                break
            if not temporal.running or time.monotonic() > deadline:
                log = self.settings.data_dir / "logs" / "temporal.log"
                raise StackError(f"Temporal dev server did not start; see {log}")
            time.sleep(0.2)
        subprocess.run(
            [
                *(cli, "operator", "namespace", "update", "--address", address),
                *("-n", self.settings.temporal_namespace, "--retention", RETENTION),
            ],
            check=True,
            capture_output=True,
        )

    def stop(self) -> dict[str, int]:
        """Stop in reverse order of start; returns each process's exit status."""
        statuses = {p.name: p.stop() for p in reversed(self.processes.values())}
        self.processes.clear()
        self._restart_at.clear()
        if self._temporal_log is not None:
            self._temporal_log.close()
            self._temporal_log = None
        return statuses

    def first_dead(self) -> ManagedProcess | None:
        return next((p for p in self.processes.values() if not p.running), None)

    def supervise(self, now: float | None = None) -> ManagedProcess | None:
        """One round of `make up`'s watch over its processes. A worker that died is restarted
        after its backoff, saying so in the output, while the API and the rest stay up: the
        sagas it was running wait in Temporal and resume on the new worker. Returns a dead
        process the stack cannot do without (Temporal, the API), for the caller to stop all."""
        now = time.monotonic() if now is None else now
        for name, process in self.processes.items():
            if process.running or name in self._restart_at:
                continue
            if not name.startswith("worker"):
                return process
            delay = self._backoffs.setdefault(name, Backoff()).next_delay(now)
            self._restart_at[name] = now + delay
            self._say(
                f"{name} exited with status {process.popen.returncode}; restarting it in "
                f"{delay:g}s (the API and the other processes stay up)"
            )
        for name, due in list(self._restart_at.items()):
            if now < due:
                continue
            del self._restart_at[name]
            try:
                self.start_process(name)
            except StackError as err:  # still dead: the next round waits longer
                self._say(f"{name} did not start again: {err}")
                continue
            self._backoffs[name].restarted(time.monotonic())
            self._say(f"{name} restarted")
        return None

    def _say(self, message: str) -> None:
        if self.output is not None:
            print(f"[supervisor] {message}", file=self.output, flush=True)


def _metrics_line(stack: DevStack) -> str:
    ports = stack.metrics_ports
    if not ports:
        return "off (CLOUDMART_METRICS_PORT=0)"
    return ", ".join(f"{name} :{port}" for name, port in ports.items()) + " (/metrics)"


def banner(stack: DevStack) -> str:
    """What `make up` prints once everything runs: where things are, and how to authenticate.
    Never a secret itself: the output ends up in terminals' scrollback and in logs, so it says
    where the operator token is kept and how to send it."""
    settings = stack.settings
    assert settings.operator_token is not None  # main() fills it in
    token = settings.operator_token.get_secret_value()
    data_dir = settings.data_dir.resolve()
    stored = data_dir / OPERATOR_TOKEN_FILE
    if read_secret(stored) == token:
        kept, sent = f"kept in {stored}", f"$(cat {stored})"
    else:
        kept, sent = "the one in CLOUDMART_OPERATOR_TOKEN", "$CLOUDMART_OPERATOR_TOKEN"
    keys_from = (
        "CLOUDMART_PAYLOAD_KEYS" if settings.payload_key_ring else str(data_dir / PAYLOAD_KEYS_FILE)
    )
    if settings.require_auth:
        customers = "required: mint one with `make token CUSTOMER=<customer id>`"
    else:
        customers = "off (anyone may call them; CLOUDMART_REQUIRE_AUTH=true requires tokens)"
    return (
        "\n"
        f"  Console         {stack.api_url}/console  (shop, live orders, operator)\n"
        f"  API + docs      {stack.api_url}/docs\n"
        f"  Temporal UI     {stack.ui_url}\n"
        f"  Temporal gRPC   {settings.temporal_address}\n"
        f"  Metrics         {_metrics_line(stack)}\n"
        f"  State           {data_dir} (logs in logs/)\n"
        f"  Payload keys    {keys_from}\n"
        "\n"
        f"  Operator token  {kept}\n"
        "    operator actions send it as a bearer token, e.g.\n"
        f"    curl -X POST {stack.api_url}/projections/rebuild \\\n"
        f'         -H "Authorization: Bearer {sent}"\n'
        f"  The console's operator page: sign in with it at {stack.api_url}/console/signin\n"
        f"  Decrypted payloads in the Web UI: sign in with it at {stack.codec_url}/session\n"
        "    (then the UI's Codec Server settings, as docs/security.md says)\n"
        f"  Customer tokens {customers}\n"
        "\n  Ctrl-C stops everything; `make up` again picks up where it left off.\n"
    )
