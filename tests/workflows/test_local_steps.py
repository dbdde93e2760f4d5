"""Local step mode: the saga's steps and compensations as local activities in its own worker.

Same saga, same outcomes as the regular mode (tests/workflows/test_order_saga.py), but the
history records each step, and since saga v6 each append of the order's events, as a marker
(MarkerRecorded) instead of scheduling an activity on a task queue; and such a history
replays."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from cloudmart.contracts.orders import (
    OrderSagaInput,
    OrderState,
    OrderStatus,
    PaymentReviewDecision,
    StepMode,
    StuckPolicy,
)
from cloudmart.contracts.saga import WORKFLOW_ID_PREFIX
from cloudmart.settings import SERVICES, Settings
from services.factory import Services
from tests.support import TEST_CONVERTER, assert_books_balance, new_saga_input, stock
from tests.workflows.saga_helpers import (
    fail_first,
    one_worker,
    outcome,
    outline,
    start,
    wait_for_status,
)
from worker import LocalStepsNeedServices, local_steps_refusal, running_workers
from workflows.order_saga import OrderSaga

ALL_DONE = "COMPLETED"
LOCAL_ACTIVITY_MARKER = "core_local_activity"
APPEND = "orders.append"


@asynccontextmanager
async def local_workers(
    client: Client, settings: Settings, services: Services
) -> AsyncIterator[Services]:
    async with one_worker(client, settings, services, local_steps=True):
        yield services


def local(saga: OrderSagaInput) -> OrderSagaInput:
    return saga.model_copy(update={"step_mode": StepMode.LOCAL})


async def activities_in_history(
    handle: WorkflowHandle[OrderSaga, OrderState],
) -> tuple[list[str], list[str]]:
    """(activities scheduled on a task queue, local activities recorded as markers), by name."""
    scheduled: list[str] = []
    markers: list[str] = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled.append(event.activity_task_scheduled_event_attributes.activity_type.name)
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == LOCAL_ACTIVITY_MARKER:
                # The SDK's own record of the local activity (plain JSON, not a codec payload).
                data = json.loads(marker.details["data"].payloads[0].data)
                markers.append(data["activity_type"])
    return scheduled, markers


def saga_id(handle: WorkflowHandle[OrderSaga, OrderState]) -> str:
    return handle.id.removeprefix(WORKFLOW_ID_PREFIX)


async def replays(handle: WorkflowHandle[OrderSaga, OrderState]) -> None:
    replayer = Replayer(workflows=[OrderSaga], data_converter=TEST_CONVERTER)
    await replayer.replay_workflow(await handle.fetch_history())  # raises on nondeterminism


async def test_local_steps_complete_the_order_with_markers_instead_of_activity_tasks(
    client: Client, settings: Settings, services: Services
) -> None:
    async with local_workers(client, settings, services):
        handle = await start(client, local(new_saga_input(settings, (("SKU-A", 2),))))
        state = await outcome(handle)

    assert state.status is OrderStatus.COMPLETED
    assert outline(state.steps) == [
        ("inventory.reserve", ALL_DONE),
        ("payment.check_fraud", ALL_DONE),
        ("payment.charge", ALL_DONE),
        ("shipping.create", ALL_DONE),
        ("inventory.commit", ALL_DONE),
    ]
    assert stock(services)["SKU-A"] == (98, 0)
    assert_books_balance(services, [2000])
    scheduled, markers = await activities_in_history(handle)
    # The steps ran as local activities, and so did the one append of the order's events
    # (saga v6): nothing went through a task queue.
    assert scheduled == []
    assert markers == [*(name for name, _ in outline(state.steps)), APPEND]
    await replays(handle)


async def test_a_local_failure_compensates_in_reverse_with_local_activities(
    client: Client, settings: Settings, services: Services
) -> None:
    async with local_workers(client, settings, services):
        handle = await start(client, local(new_saga_input(settings, country="JP")))
        state = await outcome(handle)

    assert state.status is OrderStatus.FAILED
    assert state.failure is not None and state.failure.type == "Undeliverable"
    assert outline(state.compensations) == [
        ("shipping.cancel", ALL_DONE),
        ("payment.refund", ALL_DONE),
        ("inventory.release", ALL_DONE),
    ]
    assert outline(state.steps)[-1] == ("shipping.create", "FAILED")
    assert state.steps[-1].detail == f"Undeliverable: {state.failure.message}"
    assert state.compensations[1].detail == "UNDONE: refunded 2000 cents"
    assert services.orders is not None
    timeline = [e.event_type for e in services.orders.stream(saga_id(handle))]
    assert timeline[-6:] == [
        "ShipmentFailed",
        "CompensationStarted",
        "ShipmentCancelled",
        "PaymentRefunded",
        "InventoryReleased",
        "OrderFailed",
    ]
    assert_books_balance(services, [])
    scheduled, markers = await activities_in_history(handle)
    assert scheduled == []
    assert markers == [
        "inventory.reserve",
        "payment.check_fraud",
        "payment.charge",
        "shipping.create",  # failed: Undeliverable
        "shipping.cancel",
        "payment.refund",
        "inventory.release",
        APPEND,
    ]
    await replays(handle)


async def test_a_local_saga_held_for_review_appends_each_window_with_a_local_activity(
    client: Client,
    settings: Settings,
    services: Services,
    temporal_env: WorkflowEnvironment,
) -> None:
    """The window's timer fires while the saga waits for a review: its events are stored by a
    local activity then, and the rest by another at the end, in sequence."""
    async with local_workers(client, settings, services):
        handle = await start(client, local(new_saga_input(settings, token="tok_review")))
        await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
        await temporal_env.sleep(timedelta(seconds=3))  # the window's timer fires
        assert services.orders is not None
        held = [e.event_type for e in services.orders.stream(saga_id(handle))]
        assert held[-1] == "PaymentReviewRequested"  # stored while the saga waits
        await handle.execute_update(OrderSaga.review_payment, PaymentReviewDecision(approved=True))
        state = await outcome(handle)

    assert state.status is OrderStatus.COMPLETED
    stored = services.orders.stream(saga_id(handle))
    assert [e.sequence for e in stored] == list(range(1, len(stored) + 1))
    assert stored[-1].event_type == "OrderCompleted"
    scheduled, markers = await activities_in_history(handle)
    assert scheduled == []
    assert markers.count(APPEND) == 2
    await replays(handle)


async def test_a_transient_failure_of_a_local_step_is_retried_to_success(
    client: Client, settings: Settings, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    reserve_calls = fail_first(monkeypatch, services.inventory, "reserve", times=1)
    refund_calls = fail_first(monkeypatch, services.payment, "refund", times=1)
    async with local_workers(client, settings, services):
        completed = await start(client, local(new_saga_input(settings, token="tok_flaky")))
        compensated = await start(client, local(new_saga_input(settings, country="JP")))
        states = [await outcome(completed), await outcome(compensated)]

    assert [s.status for s in states] == [OrderStatus.COMPLETED, OrderStatus.FAILED]
    assert len(reserve_calls) == 3  # one failed attempt, then one call per order
    assert len(refund_calls) == 2  # the failed attempt, then the refund
    assert outline(states[1].compensations)[1] == ("payment.refund", ALL_DONE)
    assert_books_balance(services, [2000])
    for handle in (completed, compensated):
        scheduled, markers = await activities_in_history(handle)
        assert scheduled == []
        assert "payment.charge" in markers and APPEND in markers
        await replays(handle)


def test_a_saga_input_without_a_step_mode_runs_its_steps_as_regular_activities() -> None:
    """Sagas started before the setting existed (and the recorded histories) carry no mode."""
    saga = new_saga_input(Settings(task_queue_prefix="old"))
    old = saga.model_dump(mode="json")
    del old["step_mode"]
    assert OrderSagaInput.model_validate(old).step_mode is StepMode.REGULAR


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_worker_set_to_regular_steps_runs_a_local_mode_saga_with_every_service_at_hand(
    client: Client, settings: Settings, workers: Services
) -> None:
    """The saga's input fixes its mode, not the worker's setting: a saga started in local mode
    (by an API whose setting said so) must not be left retrying an unregistered step."""
    handle = await start(client, local(new_saga_input(settings, (("SKU-A", 1),))))
    state = await asyncio.wait_for(outcome(handle), timeout=60)  # not stuck retrying a step

    assert state.status is OrderStatus.COMPLETED
    scheduled, markers = await activities_in_history(handle)
    assert scheduled == []
    assert markers == [*(name for name, _ in outline(state.steps)), APPEND]
    assert_books_balance(workers, [1000])


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_saga_worker_without_every_service_is_refused_local_steps(
    client: Client, settings: Settings, services: Services
) -> None:
    orchestrator_only = Services(orders=services.orders)
    with pytest.raises(LocalStepsNeedServices, match="inventory, payment, shipping"):
        async with running_workers(
            client,
            settings.task_queues,
            orchestrator=True,
            services=orchestrator_only,
            activity_threads=1,
            local_steps=True,
        ):
            pass


def test_only_a_process_hosting_the_saga_and_every_service_may_run_local_steps() -> None:
    local_mode = Settings(step_mode=StepMode.LOCAL)
    assert local_steps_refusal(local_mode, ["orchestrator", *SERVICES, "projector"]) is None
    assert local_steps_refusal(local_mode, ["payment"]) is None  # drains regular-mode sagas
    refusal = local_steps_refusal(local_mode, ["orchestrator"])
    assert refusal is not None and "inventory, payment, shipping" in refusal
    assert local_steps_refusal(Settings(step_mode=StepMode.REGULAR), ["orchestrator"]) is None


async def test_a_stuck_local_compensation_is_reported_and_retried_on_demand(
    client: Client, settings: Settings, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dead-letter path in local mode: a round (a local activity in its backoff) is
    cancelled for the operator's retry-now, and the next round succeeds."""
    fail_first(monkeypatch, services.payment, "refund", 10**6)
    saga = local(new_saga_input(settings, country="JP"))
    saga = saga.model_copy(update={"stuck_policy": StuckPolicy(attempts=3)})
    async with local_workers(client, settings, services):
        handle = await start(client, saga)
        await wait_for_status(handle, OrderStatus.COMPENSATION_STUCK, attempts=400)
        stuck = (await handle.query(OrderSaga.state)).stuck
        assert stuck is not None and stuck.step == "payment.refund"
        assert stuck.last_error.startswith("ConnectionError: database unavailable")
        monkeypatch.undo()  # the payment database is back
        await handle.execute_update(OrderSaga.retry_compensation)
        state = await outcome(handle)

    assert state.status is OrderStatus.FAILED and state.stuck is None
    assert outline(state.compensations) == [
        ("shipping.cancel", ALL_DONE),
        ("payment.refund", ALL_DONE),
        ("inventory.release", ALL_DONE),
    ]
    assert_books_balance(services, [])
    scheduled, markers = await activities_in_history(handle)
    assert scheduled == []
    assert markers.count("payment.refund") >= 2  # given up on, then the operator's round
    await replays(handle)
