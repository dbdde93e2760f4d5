"""Saga v2 (the fraud screen before the charge) reaches sagas that v1 workers started; saga v3
(the lean history) leaves the sagas that v2 workers started as they were, saga v4 (timed event
windows) those that v3 workers started, saga v5 (windows closed by their timers) those that v4
workers started, saga v6 (local appends) the local-mode sagas of v5, saga v7 (one patch for
all) those of v6, and saga v8 (windows closed by the saga, no timers) those of v7.

The v1 worker here is today's code with the ``fraud-check`` patch not taken: that is exactly
what ``if workflow.patched(...)`` makes the old branch. The upgrade is the switch from that
code to today's, under a worker that keeps no saga in memory: each of its workflow tasks
replays the saga's whole history first, as a freshly deployed worker does. (The histories of
real v1 code are replayed by test_replay.py.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from cloudmart.contracts.orders import OrderState, OrderStatus, PaymentReviewDecision
from cloudmart.settings import Settings
from services.factory import Services
from tests.support import assert_reconciled, new_saga_input
from tests.workflows.saga_helpers import outcome, outline, start, wait_for_status
from worker import running_workers
from workflows.order_saga import (
    EVENT_WINDOWS,
    FRAUD_CHECK,
    LEAN_HISTORY,
    LOCAL_APPENDS,
    SAGA_V7,
    SAGA_V8,
    TIMER_WINDOWS,
    OrderSaga,
)

Workers = Callable[..., AbstractAsyncContextManager[list[Worker]]]


@pytest.fixture
def uncached_workers(client: Client, settings: Settings) -> Workers:
    def run(services: Services, *, orchestrator: bool = True) -> AsyncIterator[list[Worker]]:
        return running_workers(  # type: ignore[return-value]
            client,
            settings.task_queues,
            orchestrator=orchestrator,
            services=services,
            activity_threads=settings.activity_threads,
            eager_activities=False,  # see the saga_workers fixture
            max_cached_workflows=0,
        )

    return run


def older_code(monkeypatch: pytest.MonkeyPatch, *newer: str) -> None:
    """Today's code without the patches ``newer``: the code of the version before them."""
    taken: Callable[[str], bool] = workflow.patched
    monkeypatch.setattr(workflow, "patched", lambda patch: patch not in newer and taken(patch))


def v1_code(monkeypatch: pytest.MonkeyPatch) -> None:
    older_code(monkeypatch, FRAUD_CHECK, LEAN_HISTORY, SAGA_V7, SAGA_V8)


def v2_code(monkeypatch: pytest.MonkeyPatch) -> None:
    older_code(monkeypatch, LEAN_HISTORY, SAGA_V7, SAGA_V8)


def v3_code(monkeypatch: pytest.MonkeyPatch) -> None:
    older_code(monkeypatch, EVENT_WINDOWS, TIMER_WINDOWS, SAGA_V7, SAGA_V8)


def v4_code(monkeypatch: pytest.MonkeyPatch) -> None:
    older_code(monkeypatch, TIMER_WINDOWS, SAGA_V7, SAGA_V8)


def v5_code(monkeypatch: pytest.MonkeyPatch) -> None:
    older_code(monkeypatch, LOCAL_APPENDS, SAGA_V7, SAGA_V8)


def v6_code(monkeypatch: pytest.MonkeyPatch) -> None:
    older_code(monkeypatch, SAGA_V7, SAGA_V8)


def v7_code(monkeypatch: pytest.MonkeyPatch) -> None:
    older_code(monkeypatch, SAGA_V8)


def patch_markers(history: WorkflowHistory) -> list[str]:
    return [
        e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data.decode()
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]


async def markers(handle: WorkflowHandle[OrderSaga, OrderState]) -> int:
    return sum(
        [
            event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
            async for event in handle.fetch_history_events()
        ]
    )


async def test_a_v1_saga_past_the_screen_finishes_on_v2_without_it(
    client: Client,
    settings: Settings,
    uncached_workers: Workers,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with uncached_workers(services):
        with monkeypatch.context() as v1:
            v1_code(v1)
            handle = await start(client, new_saga_input(settings, token="tok_review"))
            await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
        assert await markers(handle) == 1  # the event log's patch only

        # v2 replays v1's history (no screen), then goes on.
        await handle.execute_update(OrderSaga.review_payment, PaymentReviewDecision(approved=True))
        state = await outcome(handle)

    assert state.status is OrderStatus.COMPLETED
    assert [name for name, _ in outline(state.steps)] == [
        "inventory.reserve",
        "payment.charge",
        "payment.review",
        "payment.resolve_review",
        "shipping.create",
        "inventory.commit",
    ]
    assert await markers(handle) == 1
    assert_reconciled(services, [state])


async def test_a_v1_saga_before_the_screen_is_screened_on_v2(
    client: Client,
    settings: Settings,
    uncached_workers: Workers,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with uncached_workers(Services(orders=services.orders)):
        with monkeypatch.context() as v1:
            v1_code(v1)
            # Only the saga runs: its reservation waits for inventory's worker.
            handle = await start(client, new_saga_input(settings, token="tok_fraud"))
            await wait_for_status(handle, OrderStatus.RESERVING_INVENTORY)
        service_workers = Services(
            inventory=services.inventory, payment=services.payment, shipping=services.shipping
        )
        async with uncached_workers(service_workers, orchestrator=False):
            state = await outcome(handle)

    assert state.status is OrderStatus.FAILED
    assert state.failure is not None and state.failure.type == "FraudSuspected"
    assert await markers(handle) == 2  # the screen's patch, recorded where v2 took it
    assert services.payment is not None and services.payment.totals().charges_by_status == {}
    assert_reconciled(services, [state])


async def history_counts(handle: WorkflowHandle[OrderSaga, OrderState]) -> dict[str, int]:
    """How many appends, timers and patch markers the saga's history holds."""
    counts = {"appends": 0, "timers": 0, "markers": 0}
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            counts["appends"] += attributes.activity_type.name == "orders.append"
        counts["timers"] += event.event_type == EventType.EVENT_TYPE_TIMER_STARTED
        counts["markers"] += event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    return counts


async def test_a_v2_saga_held_for_review_finishes_on_v3_as_v2(
    client: Client,
    settings: Settings,
    uncached_workers: Workers,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Started by v2 (each event appended as soon as possible, no window's timer), upgraded
    while it waits for a review: it goes on as v2 did, and stores every event once."""
    async with uncached_workers(services):
        with monkeypatch.context() as v2:
            v2_code(v2)
            handle = await start(client, new_saga_input(settings, token="tok_review"))
            await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
        await handle.execute_update(OrderSaga.review_payment, PaymentReviewDecision(approved=True))
        state = await outcome(handle)

    assert state.status is OrderStatus.COMPLETED
    counts = await history_counts(handle)
    assert counts["markers"] == 2  # the event log and the screen: not v3's
    assert counts["timers"] == 1  # the review's deadline: v2 has no window
    assert counts["appends"] >= 4  # one at least per step's event, as v2 does
    assert services.orders is not None
    assert [e.event_type for e in services.orders.stream(state.order_id)][-1] == "OrderCompleted"
    assert_reconciled(services, [state])


@pytest.mark.parametrize(
    ("older", "kept", "never"),
    [
        (v3_code, LEAN_HISTORY, (EVENT_WINDOWS, TIMER_WINDOWS)),  # on v4 and on
        (v4_code, EVENT_WINDOWS, (TIMER_WINDOWS,)),  # v4 on v5
        (v6_code, TIMER_WINDOWS, (SAGA_V7,)),  # v6 (five patches) on v7 (one)
        (v7_code, SAGA_V7, (SAGA_V8,)),  # v7 (its window timers) on v8
    ],
    ids=["v3", "v4", "v6", "v7"],
)
async def test_a_saga_held_for_review_after_its_window_finishes_as_it_started(
    older: Callable[[pytest.MonkeyPatch], None],
    kept: str,
    never: tuple[str, ...],
    client: Client,
    settings: Settings,
    uncached_workers: Workers,
    services: Services,
    temporal_env: WorkflowEnvironment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Started by v3 (its batched appends), v4 (its timed windows), v5 in the local step mode
    (its regular appends), v6 (its five patches) or v7 (its window timers), upgraded while it
    waits for a review after its window's timer fired: it replays on today's code and goes on
    as it started, storing every event once, in order."""
    saga = new_saga_input(settings, token="tok_review")
    async with uncached_workers(services):
        with monkeypatch.context() as before:
            older(before)
            handle = await start(client, saga)
            await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
            await temporal_env.sleep(timedelta(seconds=3))  # the window's timer fires
        await handle.execute_update(OrderSaga.review_payment, PaymentReviewDecision(approved=True))
        state = await outcome(handle)

    assert state.status is OrderStatus.COMPLETED
    names = patch_markers(await handle.fetch_history())
    assert any(kept in name for name in names)
    assert not any(newer in name for name in names for newer in never)
    assert services.orders is not None
    stored = services.orders.stream(state.order_id)
    assert stored[0].event_type == "OrderPlaced" and stored[-1].event_type == "OrderCompleted"
    assert [e.sequence for e in stored] == list(range(1, len(stored) + 1))
    assert_reconciled(services, [state])
