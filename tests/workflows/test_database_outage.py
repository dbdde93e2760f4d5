"""A service database that goes away mid-saga: the step retries until it is back, and nothing is
lost or done twice."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import make_url, text
from temporalio.client import Client

from cloudmart.contracts.orders import OrderStatus
from cloudmart.settings import Settings
from services.factory import Services
from tests.support import assert_reconciled, new_saga_input
from tests.workflows.saga_helpers import outcome, start


@contextmanager
def database_outage(
    settings: Settings, service: str, request: pytest.FixtureRequest
) -> Iterator[None]:
    """PostgreSQL: refuse new connections and end the open ones. SQLite: hold its write lock."""
    url = make_url(settings.db_url(service))
    if url.get_backend_name() == "postgresql":
        admin = request.getfixturevalue("postgres_databases").admin
        with admin.connect() as connection:
            connection.execute(text(f"ALTER DATABASE {url.database} ALLOW_CONNECTIONS false"))
            connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db"),
                {"db": url.database},
            )
        try:
            yield
        finally:
            with admin.connect() as connection:
                connection.execute(text(f"ALTER DATABASE {url.database} ALLOW_CONNECTIONS true"))
    else:
        blocker = sqlite3.connect(url.database, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()


async def test_a_payment_database_outage_delays_the_saga_and_loses_nothing(
    client: Client, settings: Settings, workers: Services, request: pytest.FixtureRequest
) -> None:
    saga = new_saga_input(settings)
    with database_outage(settings, "payment", request):
        handle = await start(client, saga)
        for _ in range(400):  # until payment's first step (the fraud screen) has failed once
            pending = (await handle.describe()).raw_description.pending_activities
            if (
                pending
                and pending[0].activity_type.name == "payment.check_fraud"
                and pending[0].attempt > 1
            ):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("payment.check_fraud never failed during the outage")
        last_failure = pending[0].last_failure.message
    state = await outcome(handle)

    assert state.status is OrderStatus.COMPLETED, state.failure
    assert last_failure  # e.g. "database is locked", or the connection refused
    assert_reconciled(workers, [state])
