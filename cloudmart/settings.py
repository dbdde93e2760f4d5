"""The one settings object: every process (API, worker, dev stack, tests) reads the environment
here.

Every field maps to an environment variable named ``CLOUDMART_<FIELD>``, e.g.
``CLOUDMART_INVENTORY_DB_URL``. docs/configuration.md lists them.
"""

from __future__ import annotations

import math
import re
import sys
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Annotated

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cloudmart.codec import PayloadKey, parse_payload_keys
from cloudmart.contracts.orders import (
    EVENTS_WINDOW,
    MAX_EVENTS_WINDOW,
    OrderSagaInput,
    PlaceOrder,
    StuckPolicy,
    saga_input,
)
from cloudmart.contracts.routing import TaskQueues

SERVICES = ("customers", "inventory", "payment", "shipping")
"""The services the saga's steps call, each on its own task queue."""
DATABASES = (
    "event_store",
    *SERVICES,
    "payment_provider",
    "readmodel",
    "loyalty",
    "activity",
    "audit",
)
"""Every database: the order event store (the orchestrator's), one per service, the simulated
payment provider's own, the read side's projections, the loyalty service's, and the customers'
activity (the API's), and the compliance audit log."""

MIN_SECRET_LENGTH = 32
"""Operator token and auth secret: long enough that guessing is hopeless, and for the auth
secret the key size HS256 asks for (256 bits, RFC 7518 section 3.2; PyJWT warns below it).
``token_urlsafe(32)`` makes 43 characters."""


def _bare_seconds(value: object) -> object:
    # pydantic reads "PT24H" and "24:00:00" but not a bare "86400" from the environment.
    if isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            return value
        if math.isfinite(seconds):
            return seconds
    return value


Duration = Annotated[timedelta, BeforeValidator(_bare_seconds)]
"""A duration setting: seconds (``30``, ``2.5``) or ISO 8601 (``PT24H``)."""


class Settings(BaseSettings):
    # hide_input_in_errors: a rejected key (or database URL) is never echoed into a log.
    model_config = SettingsConfigDict(
        env_prefix="CLOUDMART_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    data_dir: Path = Path(".data")
    """Where the default SQLite databases and the dev server's state live."""

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    temporal_tls: bool | None = None
    """TLS to Temporal's frontend. Unset, it is on when any ``temporal_tls_*`` setting or the
    API key is; on without a CA, the frontend is verified against the system's roots."""
    temporal_tls_ca: Path | None = None
    """The CA certificate (PEM) that signed the frontend's certificate, for a private CA."""
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    """This process's client certificate and private key (PEM) for mutual TLS: both or neither."""
    temporal_tls_server_name: str | None = None
    """The name the frontend's certificate must carry (also sent as SNI), when it is not the
    host in ``temporal_address``."""
    temporal_api_key: SecretStr | None = None
    """Sent on every call to Temporal as ``Authorization: Bearer <key>``: a JWT for the server's
    ClaimMapper and Authorizer, or a Temporal Cloud API key. Needs TLS (never sent in clear)."""
    temporal_ui_port: int = 8233
    """The dev server's Web UI (``make up``); 0 runs the dev server headless."""
    temporal_ui_url: str = ""
    """Where the console links each order's execution in Temporal's Web UI; empty means the
    dev server's UI (``http://localhost:<temporal_ui_port>``, none when that is 0)."""
    task_queue_prefix: str = Field(default="cloudmart", pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")
    """Task queues are ``<prefix>-orders``, ``<prefix>-inventory``, ... (one per service)."""

    inventory_db_url: str = ""
    payment_db_url: str = ""
    shipping_db_url: str = ""
    event_store_db_url: str = ""
    """The order event store."""
    readmodel_db_url: str = ""
    """The read side: projections built from the order events."""
    loyalty_db_url: str = ""
    """SQLAlchemy URLs; empty means a SQLite file ``<data_dir>/<name>.db``."""
    customers_db_url: str = ""
    """Customers' keys, e-mail claims and orders (their events are in the event store)."""
    payment_provider_db_url: str = ""
    """The simulated payment provider's ledger (another company's system in real life)."""
    activity_db_url: str = ""
    """Customers' activity, which the API records (docs/activity.md)."""
    audit_db_url: str = ""
    """The compliance audit log, which the API and operator commands append to (docs/audit.md)."""

    payment_review_timeout: Duration = Field(default=timedelta(hours=24), gt=timedelta(0))
    """How long a payment held for fraud review waits for a decision (seconds or ISO 8601)."""

    compensation_stuck_attempts: int = Field(default=20, ge=1)
    compensation_stuck_after: Duration = Field(default=timedelta(minutes=10), gt=timedelta(0))
    """A compensation failing this many times, or for this long, marks its order
    COMPENSATION_STUCK for an operator; it keeps being retried."""
    compensation_retry_cap: Duration = Field(default=timedelta(minutes=5), gt=timedelta(0))
    """The longest wait between retries of a stuck compensation."""

    events_window: Duration = Field(default=EVENTS_WINDOW, gt=timedelta(0), le=MAX_EVENTS_WINDOW)
    """How long a step may run while a saga's events wait to be stored: past it (or at the
    step's first failure) the saga stores them, so the event store (and the read side) lags a
    running saga by up to about this much per step; an order that runs no step past it stores
    its events in one append at its end (seconds or ISO 8601, at most 10 minutes). Fixed per
    saga at its start."""

    shipping_countries: Annotated[frozenset[str], NoDecode] = frozenset(
        {"AT", "BE", "DE", "DK", "ES", "FR", "GB", "IE", "IT", "NL", "PL", "SE", "US"}
    )
    """ISO 3166-1 alpha-2 codes shipping delivers to (comma-separated in the environment)."""

    return_window: Duration = Field(default=timedelta(days=30), gt=timedelta(0))
    """How long after its OrderCompleted an order's lines may be returned (seconds or ISO 8601;
    ``POST /orders/{id}/returns`` refuses a return past it, docs/returns.md)."""
    choreography_attempts: int = Field(default=5, ge=1)
    """Attempts a choreography consumer (the return saga's) gives an event before parking it as
    a dead letter and moving on to the next (docs/returns.md)."""

    snapshot_every: int = Field(default=100, ge=1)
    """Event-sourced loyalty accounts are snapshotted every this many events."""

    seed_demo_catalog: bool = True
    activity_threads: int = Field(default=16, ge=1, le=256)
    """Threads (and concurrent activities) per service worker; database pools are sized to match."""
    max_cached_workflows: int = Field(default=1000, ge=0)
    """Sagas the orchestrator's worker keeps in memory (the SDK's default). An evicted saga is
    rebuilt by replaying its history when it next has work; 0 turns the cache and sticky task
    queues off (docs/performance.md, "Memory and idle sagas")."""

    workflow_sandbox: bool = True
    """Run the saga in the SDK's workflow sandbox, which re-imports its modules for every saga
    and checks each call it makes, catching nondeterministic code (a clock, a file, a network
    call) as it runs. False runs it as plain Python: less CPU per saga and lower latency
    (docs/performance.md), with determinism then resting on the workflow's tests and the
    replay of recorded histories, which stay sandboxed."""

    payload_keys: SecretStr = SecretStr("")
    """Payload encryption keys (AES-256-GCM): ``id:base64key`` entries, comma-separated, newest
    first. New payloads use the first; every listed key still decrypts. Required by every process
    that talks to Temporal; `make up` generates one into ``<data_dir>/payload-keys``."""
    codec_cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    """Web UI origins allowed to call the API's codec server (comma-separated); empty means the
    dev server's UI, ``http://localhost:<temporal_ui_port>`` and ``http://127.0.0.1:<port>``."""

    metrics_address: str = Field(default="", pattern=r"^$|^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$")
    """Where this process serves Prometheus metrics, ``host:port`` (the SDK's and ours:
    cloudmart/metrics.py); empty: none. ``make up`` gives each process its own."""
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    """``make up``'s first metrics port: the API serves at it, each worker process at the next
    ones, the dev server after them; 0: no metrics."""

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_max_body_bytes: int = 64 * 1024

    operator_token: SecretStr | None = None
    """The bearer token of operator actions (payment review, projection rebuilds). Unset, the
    API refuses them (503); ``make up`` makes one and keeps it in ``<data_dir>/operator-token``."""
    auth_secret: SecretStr | None = None
    """Signs customer tokens (HS256); required when ``require_auth`` is on. ``make up``
    generates one and keeps it in ``<data_dir>/auth-secret``."""
    require_auth: bool = False
    """Customer endpoints need a customer (or the operator's) token; off, anyone may call them."""
    allow_open_api: bool = False
    """Let the API listen beyond loopback with ``require_auth`` off, where anyone who reaches it
    sees and cancels every customer's orders; without it the API refuses to start so."""
    customer_token_max_lifetime: Duration = Field(default=timedelta(days=30), gt=timedelta(0))
    """The longest a customer token may live (``exp`` - ``iat``); a longer one is refused."""
    operator_token_max_lifetime: Duration = Field(default=timedelta(hours=12), gt=timedelta(0))
    """The longest a named operator's token may live (``python -m api.tokens --operator``)."""
    operator: str | None = None
    """Who runs an operator command (``make rebuild-projections``), as the audit log records
    it; unset, the OS user's name."""

    activity_tracking: bool = True
    """Record customers' actions (searches, views, orders, ratings...) as the API answers them
    (docs/activity.md); off, nothing is recorded and the timeline stays as it was."""
    activity_journal_dir: Path | None = None
    """Where the API appends each action before it answers, until it is in the activity
    database; unset, ``<data_dir>/activity-journal``. Must outlive the API process."""

    @field_validator(
        "operator_token",
        "auth_secret",
        "temporal_tls",
        "temporal_tls_ca",
        "temporal_tls_cert",
        "temporal_tls_key",
        "temporal_tls_server_name",
        "temporal_api_key",
        "activity_journal_dir",
        mode="before",
    )
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        # An empty variable (``CLOUDMART_OPERATOR_TOKEN=``, or compose's ``${VAR:-}``) is
        # unset, never an empty secret or the current directory as a file.
        return None if value == "" else value

    @field_validator("temporal_tls_ca", "temporal_tls_cert")
    @classmethod
    def _a_certificate(cls, value: Path | None) -> Path | None:
        return _pem_file(value, "-----BEGIN CERTIFICATE-----", "a PEM certificate")

    @field_validator("temporal_tls_key")
    @classmethod
    def _a_private_key(cls, value: Path | None) -> Path | None:
        # "PRIVATE KEY-----" ends the PKCS#8 header and the RSA and EC ones alike.
        path = _pem_file(value, "PRIVATE KEY-----", "a PEM private key")
        if path is not None and b"ENCRYPTED" in path.read_bytes():
            # The SDK takes no passphrase: it would fail at the first connection instead.
            raise ValueError(f"{path} is encrypted; the key must be unencrypted (mode 0600)")
        return path

    @field_validator("temporal_api_key")
    @classmethod
    def _a_header_value(cls, value: SecretStr | None) -> SecretStr | None:
        # It travels as an HTTP/2 header: a stray newline or space (a key pasted from a file)
        # would otherwise fail every call with an error far from its cause.
        if value is not None and not re.fullmatch(r"[\x21-\x7e]+", value.get_secret_value()):
            raise ValueError("must be printable ASCII without spaces or line breaks")
        return value

    @field_validator("operator_token", "auth_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"must be at least {MIN_SECRET_LENGTH} characters; make one with "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value

    @field_validator("shipping_countries", mode="before")
    @classmethod
    def _split_countries(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(code.strip().upper() for code in value.split(",") if code.strip())
        return value

    @field_validator("payload_keys")
    @classmethod
    def _parse_keys(cls, value: SecretStr) -> SecretStr:
        parse_payload_keys(value.get_secret_value())  # raises, naming the bad entry
        return value

    @field_validator("codec_cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("codec_cors_origins")
    @classmethod
    def _check_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            # CORS compares origins exactly: a path or trailing slash would never match.
            if not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f"{origin!r} is not an origin like http://localhost:8080")
        return value

    @model_validator(mode="after")
    def _temporal_tls_consistent(self) -> Settings:
        if (self.temporal_tls_cert is None) != (self.temporal_tls_key is None):
            given, missing = ("CERT", "KEY") if self.temporal_tls_key is None else ("KEY", "CERT")
            raise ValueError(
                f"CLOUDMART_TEMPORAL_TLS_{given} is set without CLOUDMART_TEMPORAL_TLS_{missing}:"
                " a client certificate needs its private key, and the key its certificate"
            )
        if self.temporal_tls is False:
            if self._temporal_tls_implied:
                raise ValueError(
                    "CLOUDMART_TEMPORAL_TLS is false but CLOUDMART_TEMPORAL_TLS_CA, _CERT, _KEY "
                    "or _SERVER_NAME is set: unset them, or turn TLS on"
                )
            if self.temporal_api_key is not None:
                raise ValueError(
                    "CLOUDMART_TEMPORAL_API_KEY is set but CLOUDMART_TEMPORAL_TLS is false: "
                    "the key would cross the network in clear; turn TLS on"
                )
        return self

    @property
    def _temporal_tls_implied(self) -> bool:
        return any(
            setting is not None
            for setting in (
                self.temporal_tls_ca,
                self.temporal_tls_cert,
                self.temporal_tls_key,
                self.temporal_tls_server_name,
            )
        )

    @property
    def temporal_tls_on(self) -> bool:
        """Whether clients connect to Temporal over TLS: as set, else implied by the others."""
        if self.temporal_tls is not None:
            return self.temporal_tls
        return self._temporal_tls_implied or self.temporal_api_key is not None

    @model_validator(mode="after")
    def _default_database_files(self) -> Settings:
        for database in DATABASES:
            field = f"{database}_db_url"
            if not getattr(self, field):
                path = (self.data_dir / f"{database}.db").resolve()
                object.__setattr__(self, field, f"sqlite:///{path}")
        return self

    def db_url(self, service: str) -> str:
        return getattr(self, f"{service}_db_url")

    @property
    def activity_journal(self) -> Path:
        return self.activity_journal_dir or self.data_dir / "activity-journal"

    @property
    def stuck_policy(self) -> StuckPolicy:
        return StuckPolicy(
            attempts=self.compensation_stuck_attempts,
            after=self.compensation_stuck_after,
            retry_cap=self.compensation_retry_cap,
        )

    @property
    def payload_key_ring(self) -> tuple[PayloadKey, ...]:
        """The keys, newest first (empty when none are configured)."""
        return parse_payload_keys(self.payload_keys.get_secret_value())

    @property
    def codec_origins(self) -> tuple[str, ...]:
        if self.codec_cors_origins:
            return self.codec_cors_origins
        if not self.temporal_ui_port:
            return ()
        port = self.temporal_ui_port
        return (f"http://localhost:{port}", f"http://127.0.0.1:{port}")

    @property
    def web_ui_url(self) -> str | None:
        """Temporal's Web UI, as the console links it; None when there is none."""
        if self.temporal_ui_url:
            return self.temporal_ui_url.rstrip("/")
        return f"http://localhost:{self.temporal_ui_port}" if self.temporal_ui_port else None

    @property
    def task_queues(self) -> TaskQueues:
        return TaskQueues.with_prefix(self.task_queue_prefix)

    def saga_input(self, order_id: str, order: PlaceOrder) -> OrderSagaInput:
        """``order``'s saga input with this deployment's policies fixed in it (its queues,
        review timeout, stuck policy and events window)."""
        return saga_input(
            order_id,
            order,
            payment_review_timeout=self.payment_review_timeout,
            task_queues=self.task_queues,
            stuck_policy=self.stuck_policy,
            events_window=self.events_window,
        )


def _pem_file(path: Path | None, marker: str, what: str) -> Path | None:
    """``path`` if it can be read now and holds ``what``: a process refuses to start rather
    than fail at its first connection. The error names the file, never its contents."""
    if path is None:
        return None
    try:
        content = path.read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror or err}") from None
    if marker.encode() not in content:
        raise ValueError(f"{path} is not {what} (no {marker!r} line)")
    return path


@cache
def get_settings() -> Settings:
    """This process's settings, from the environment. A bad value ends the process (exit 2)
    with a line per problem naming its variable, rather than a traceback."""
    try:
        return Settings()
    except ValidationError as err:
        print(bad_settings(err), file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def bad_settings(err: ValidationError) -> str:
    lines = ["bad settings (see docs/configuration.md):"]
    for error in err.errors(include_input=False, include_url=False):
        where = f"CLOUDMART_{str(error['loc'][0]).upper()}: " if error["loc"] else ""
        lines.append(f"  {where}{error['msg']}")
    return "\n".join(lines)
