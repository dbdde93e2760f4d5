"""A service database that goes away mid-saga: the step retries until it is back, and nothing is
lost or done twice."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import make_url, text
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import Client, WorkflowHandle

from cloudmart.contracts.events import Event
from cloudmart.contracts.orders import OrderState, OrderStatus, PaymentReviewDecision
from cloudmart.settings import Settings
from services.factory import Services
from tests.support import Gate, assert_reconciled, new_saga_input
from tests.workflows.saga_helpers import outcome, start, wait_for_status
from workflows.order_saga import OrderSaga


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


async def pending_appends(
    handle: WorkflowHandle[OrderSaga, OrderState], count: int
) -> list[PendingActivityInfo]:
    """Wait until ``count`` of the saga's appends are pending at once; oldest first."""
    for _ in range(400):
        pending = (await handle.describe()).raw_description.pending_activities
        appends = [a for a in pending if a.activity_type.name == "event_store.append"]
        if len(appends) >= count:
            return sorted(appends, key=lambda a: int(a.activity_id))
        await asyncio.sleep(0.05)
    raise AssertionError(f"never {count} appends pending at once")


async def test_a_window_stored_while_the_one_before_is_still_in_flight_waits_its_turn(
    client: Client,
    settings: Settings,
    workers: Services,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A saga's first window's append is slow (held here), and the saga outlasts its second
    window (shipping is down): the second append starts when its timer fires, the store refuses
    it (it would leave a gap), and it is retried until the first is in. The order's events are
    stored once, in sequence."""
    assert workers.event_store is not None
    slow_first, append = Gate(), workers.event_store.append
    calls: list[list[int]] = []

    def first_held(events: list[Event]) -> int:
        calls.append([e.sequence for e in events])
        if len(calls) == 1:
            slow_first.pass_()
        return append(events)

    monkeypatch.setattr(workers.event_store, "append", first_held)
    saga = new_saga_input(settings, token="tok_review")
    handle = await start(client, saga)
    await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
    await slow_first.entered()  # the first window's timer fired: its append runs
    with database_outage(settings, "shipping", request):
        await handle.execute_update(OrderSaga.review_payment, PaymentReviewDecision(approved=True))
        for _ in range(200):
            second = (await pending_appends(handle, 2))[1]
            if second.attempt > 1:
                break
            await asyncio.sleep(0.05)
        refusal = await client.data_converter.decode_failure(second.last_failure)  # encrypted
        assert "would follow sequence 0" in str(refusal)
        slow_first.open()
    state = await outcome(handle)

    assert state.status is OrderStatus.COMPLETED, state.failure
    stored = [e for e in workers.event_store.read_after(0) if e.aggregate_id == saga.order_id]
    assert [e.sequence for e in stored] == list(range(1, len(stored) + 1))  # in store order
    assert stored[-1].event_type == "OrderCompleted"
    assert calls[0][0] == 1 and calls[1][0] == calls[0][-1] + 1  # two windows, two batches
    assert_reconciled(workers, [state])
