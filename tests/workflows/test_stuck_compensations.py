"""Stuck compensations, this system's dead-letter queue: a compensation that keeps failing, or
that its service refuses for good, is reported (state, search attribute, event store, the read
side's list) and waits for an operator's retry-now or resolution by hand; one that failed for a
while keeps being retried meanwhile. Never abandoned, never silent."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from activities.failures import WITHHELD
from cloudmart.contracts.failures import InvalidTransition
from cloudmart.contracts.orders import (
    CancelOrder,
    OrderSagaInput,
    OrderState,
    OrderStatus,
    ResolveCompensation,
    StuckPolicy,
)
from cloudmart.contracts.saga import ORDER_STATUS
from cloudmart.settings import Settings
from services.factory import Services
from services.readmodel.queries import ReadModel
from tests.support import TEST_CONVERTER, assert_books_balance, new_saga_input, stock
from tests.workflows.saga_helpers import fail_first, outcome, outline, start, wait_for_status
from workflows.order_saga import OrderSaga

REFUND_BROKEN = 10**6
"""Attempts the refund fails: for ever, as far as a test is concerned."""


def undeliverable(settings: Settings, policy: StuckPolicy | None = None) -> OrderSagaInput:
    """Charged, then refused by shipping: its compensation refunds the payment."""
    saga = new_saga_input(settings, country="JP")
    return saga.model_copy(update={"stuck_policy": policy}) if policy else saga


async def stuck(handle: WorkflowHandle[OrderSaga, OrderState]) -> OrderState:
    await wait_for_status(handle, OrderStatus.COMPENSATION_STUCK, attempts=400)
    return await handle.query(OrderSaga.state)


async def stored_events(services: Services, order_id: str, event_type: str) -> list[dict]:
    assert services.event_store is not None
    for _ in range(200):  # appended in the background, just after the state changed
        found = [
            e.data for e in services.event_store.stream(order_id) if e.event_type == event_type
        ]
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {event_type} event stored for order {order_id}")


async def retried_in_a_round(handle: WorkflowHandle[OrderSaga, OrderState], step: str) -> int:
    """Wait until ``step`` is retried in a round: pending, its first attempt failed and the
    next one awaited (the attempt number the server reports); an AssertionError if never."""
    deadline = time.monotonic() + 10
    while True:
        described = await handle.describe()
        pending = {
            a.activity_type.name: a.attempt for a in described.raw_description.pending_activities
        }
        if pending.get(step, 0) >= 2:
            return pending[step]
        assert time.monotonic() < deadline, f"{step} was never retried in a round: {pending}"
        await asyncio.sleep(0.05)


CLOSING = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED,
}


async def history_once_idle(handle: WorkflowHandle[OrderSaga, OrderState]) -> list[tuple[str, str]]:
    """The saga's history (each event's type, and for an activity its name) once it shows nothing
    in flight: every activity scheduled has ended, no timer is set, no workflow task is open.
    Then only an outside request (an operator's) can move the saga."""
    deadline = time.monotonic() + 10
    while True:
        events = [event async for event in handle.fetch_history_events()]
        names: dict[int, str] = {}
        open_: dict[int, str] = {}
        for event in events:
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                name = event.activity_task_scheduled_event_attributes.activity_type.name
                names[event.event_id] = open_[event.event_id] = name
            elif event.event_type in CLOSING:
                closed = getattr(event, event.WhichOneof("attributes"))
                open_.pop(closed.scheduled_event_id, None)
            elif event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
                open_[event.event_id] = "timer"
            elif event.event_type in (
                EventType.EVENT_TYPE_TIMER_FIRED,
                EventType.EVENT_TYPE_TIMER_CANCELED,
            ):
                timer = getattr(event, event.WhichOneof("attributes"))
                open_.pop(timer.started_event_id, None)
        tasks = [e.event_type for e in events if "WORKFLOW_TASK" in EventType.Name(e.event_type)]
        if not open_ and tasks[-1] == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            return [(EventType.Name(e.event_type), names.get(e.event_id, "")) for e in events]
        last_task = EventType.Name(tasks[-1])
        assert time.monotonic() < deadline, f"the saga never stopped: {open_} open, {last_task}"
        await asyncio.sleep(0.05)


async def test_a_compensation_failing_past_its_attempts_is_reported_and_retried_on_demand(
    client: Client, settings: Settings, workers: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fail_first(monkeypatch, workers.payment, "refund", REFUND_BROKEN)
    saga = undeliverable(settings, StuckPolicy(attempts=3))
    handle = await start(client, saga)

    state = await stuck(handle)
    assert state.stuck is not None and state.stuck.step == "payment.refund"
    # A library's message is withheld (activities/failures.py): the type says what failed.
    assert state.stuck.last_error == f"ConnectionError: {WITHHELD}"
    assert len(calls) in (3, 4)  # the policy's attempts, then reported (and a round begun)
    described = await handle.describe()
    assert described.typed_search_attributes.get(ORDER_STATUS) == "COMPENSATION_STUCK"
    event = (await stored_events(workers, saga.order_id, "CompensationStuck"))[0]
    assert event["step"] == "payment.refund" and event["error"] == state.stuck.last_error

    # The read side lists it for operators (GET /orders?status=COMPENSATION_STUCK).
    assert workers.projector is not None
    workers.projector.catch_up()
    listed = ReadModel(workers.projector.engine).orders(status=OrderStatus.COMPENSATION_STUCK)
    assert [row.order_id for row in listed.items] == [saga.order_id]

    # Failed and being undone: too late for the customer to cancel.
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(OrderSaga.cancel, CancelOrder())
    assert "being compensated" in str(refused.value.cause)

    # Still retried, in rounds: the first round's first attempt runs at once, and fails; its
    # next waits a minute (backing off to the policy's cap). The operator need not wait.
    assert await retried_in_a_round(handle, "payment.refund") == 2
    assert (await handle.query(OrderSaga.state)).status is OrderStatus.COMPENSATION_STUCK
    calls_before_fix = len(calls)
    monkeypatch.undo()  # the payment database is back
    await handle.execute_update(OrderSaga.retry_compensation)
    state = await outcome(handle)

    assert state.status is OrderStatus.FAILED and state.stuck is None
    assert outline(state.compensations) == [
        ("shipping.cancel", "COMPLETED"),
        ("payment.refund", "COMPLETED"),
        ("inventory.release", "COMPLETED"),
    ]
    assert calls_before_fix == 4  # the policy's 3, then the first round's first at once
    assert_books_balance(workers, [])  # every cent refunded, every unit back
    timeline = [e.event_type for e in workers.event_store.stream(saga.order_id)]  # type: ignore[union-attr]
    assert timeline[-5:] == [
        "ShipmentCancelled",
        "CompensationStuck",
        "PaymentRefunded",
        "InventoryReleased",
        "OrderFailed",
    ]
    # The dead-letter path replays like the rest of the saga.
    replayer = Replayer(workflows=[OrderSaga], data_converter=TEST_CONVERTER)
    await replayer.replay_workflow(await handle.fetch_history())


async def test_after_ten_minutes_of_failures_it_is_stuck_and_an_operator_resolves_it_by_hand(
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    workers: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fail_first(monkeypatch, workers.payment, "refund", REFUND_BROKEN)
    saga = undeliverable(settings)  # the default policy: 20 attempts or 10 minutes
    handle = await start(temporal_env.client, saga)
    await wait_for_status(handle, OrderStatus.COMPENSATING)
    assert (await handle.query(OrderSaga.state)).stuck is None
    await temporal_env.sleep(timedelta(minutes=10, seconds=1))
    state = await stuck(handle)
    assert state.stuck is not None and state.stuck.step == "payment.refund"
    # The limit that ended the retries was a timeout; the error shown is the last attempt's.
    assert state.stuck.last_error == f"ConnectionError: {WITHHELD}"

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            OrderSaga.resolve_compensation,
            ResolveCompensation(step="inventory.release", note="wrong step"),
        )
    assert "the stuck compensation is payment.refund" in str(refused.value.cause)
    accepted = await handle.execute_update(
        OrderSaga.resolve_compensation,
        ResolveCompensation(step="payment.refund", note="refunded from the provider dashboard"),
    )
    assert accepted.status is OrderStatus.COMPENSATING
    state = await outcome(handle)

    assert state.status is OrderStatus.FAILED
    assert outline(state.compensations) == [
        ("shipping.cancel", "COMPLETED"),
        ("payment.refund", "RESOLVED"),
        ("inventory.release", "COMPLETED"),
    ]
    assert state.compensations[1].detail == "refunded from the provider dashboard"
    resolved = await stored_events(workers, saga.order_id, "CompensationResolved")
    assert resolved == [{"step": "payment.refund", "note": "refunded from the provider dashboard"}]
    story = workers.event_store.stream(saga.order_id)  # type: ignore[union-attr]
    assert [e.user_id for e in story if e.event_type == "CompensationResolved"] == ["operator"]
    assert stock(workers)["SKU-A"] == (100, 0)  # the rest of the saga was undone as usual
    # The history names the operator's resolution, for the Web UI.
    updates = [
        event.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]
    assert updates == ["resolve_compensation"]


async def test_operators_cannot_act_on_an_order_that_is_not_stuck(
    client: Client, settings: Settings, workers: Services
) -> None:
    handle = await start(client, new_saga_input(settings, token="tok_review"))
    await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(OrderSaga.retry_compensation)
    assert "no compensation is stuck" in str(refused.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            OrderSaga.resolve_compensation,
            ResolveCompensation(step="payment.refund", note="nothing to resolve"),
        )
    assert "no compensation is stuck" in str(refused.value.cause)
    await handle.cancel()
    assert (await outcome(handle)).status is OrderStatus.CANCELLED


async def test_a_compensation_its_service_refuses_for_good_is_stuck_until_an_operator_acts(
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    workers: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A non-retryable error from a compensation is not the end of it: the order does not move
    on as if the money were back. It is stuck with that error, and nothing retries it (its
    service said it never can succeed) until an operator does."""
    assert workers.payment is not None
    refunds: list[str] = []

    def refuse(order_id: str, reason: str) -> object:
        refunds.append(order_id)
        raise InvalidTransition(f"order {order_id}: the provider closed the card account")

    with monkeypatch.context() as broken:
        broken.setattr(workers.payment, "refund", refuse)
        saga = undeliverable(settings)
        handle = await start(temporal_env.client, saga)
        state = await stuck(handle)
        assert state.stuck is not None and state.stuck.step == "payment.refund"
        assert state.stuck.last_error.startswith("InvalidTransition: order ")
        assert state.stuck.retrying is False
        event = (await stored_events(workers, saga.order_id, "CompensationStuck"))[0]
        assert event["step"] == "payment.refund" and "card account" in event["error"]
        described = await handle.describe()
        assert described.typed_search_attributes.get(ORDER_STATUS) == "COMPENSATION_STUCK"
        # Nothing is left in flight (no retry pending, no timer set) and an hour of the saga's
        # time, past any round's backoff (a minute, up to the 5-minute cap), changes nothing.
        idle = await history_once_idle(handle)
        assert [e for e in idle if e[1] == "payment.refund"] == [
            ("EVENT_TYPE_ACTIVITY_TASK_SCHEDULED", "payment.refund")
        ]
        await temporal_env.sleep(timedelta(hours=1))
        assert await history_once_idle(handle) == idle
        assert refunds == [saga.order_id]

        # An operator retries it once it can succeed: here, refused again; still stuck.
        await handle.execute_update(OrderSaga.retry_compensation)
        for _ in range(100):  # the refusal reaches the saga a moment after the refund ran
            state = await handle.query(OrderSaga.state)
            if state.stuck is not None and state.stuck.rounds == 2 and not state.stuck.retrying:
                break
            await asyncio.sleep(0.05)
        assert len(refunds) == 2
        assert state.status is OrderStatus.COMPENSATION_STUCK and state.stuck is not None
        assert state.stuck.rounds == 2 and state.stuck.retrying is False

    # The refund is made by hand; the operator resolves it and the saga goes on.
    await handle.execute_update(
        OrderSaga.resolve_compensation,
        ResolveCompensation(step="payment.refund", note="refunded by bank transfer"),
    )
    state = await outcome(handle)
    assert state.status is OrderStatus.FAILED and state.stuck is None
    assert outline(state.compensations) == [
        ("shipping.cancel", "COMPLETED"),
        ("payment.refund", "RESOLVED"),
        ("inventory.release", "COMPLETED"),
    ]
    assert stock(workers)["SKU-A"] == (100, 0)
    timeline = [e.event_type for e in workers.event_store.stream(saga.order_id)]  # type: ignore[union-attr]
    assert timeline[-4:] == [
        "CompensationStuck",
        "CompensationResolved",
        "InventoryReleased",
        "OrderFailed",
    ]
