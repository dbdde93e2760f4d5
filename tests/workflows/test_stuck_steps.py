"""Stuck forward steps, the dead letter of the steps: a step that keeps failing with errors its
service may recover from is reported past the saga's StuckPolicy (state, search attribute,
event store, the read side's list) and retried in rounds until it succeeds, an operator retries
it now, or an operator aborts the order, which is then compensated like any failed order."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from activities.failures import WITHHELD
from cloudmart.contracts.orders import (
    AbortOrderUpdate,
    CancelOrder,
    OrderState,
    OrderStatus,
    RetryStepUpdate,
    StuckPolicy,
    StuckStep,
)
from cloudmart.contracts.saga import ORDER_STATUS
from cloudmart.settings import Settings
from services.factory import Services
from services.readmodel.queries import ReadModel
from tests.support import TEST_CONVERTER, assert_books_balance, new_saga_input, stock
from tests.workflows import saga_helpers as saga
from tests.workflows.test_stuck_compensations import retried_in_a_round, stored_events
from workflows.order_saga import OrderSaga

BROKEN = 10**6
"""Attempts the step fails: for ever, as far as a test is concerned."""


Saga = WorkflowHandle[OrderSaga, OrderState]


async def stuck_in(
    client: Client,
    settings: Settings,
    failing: tuple[pytest.MonkeyPatch, object, str],
    policy: StuckPolicy,
) -> tuple[Saga, list[int]]:
    """A saga whose ``service.method`` fails until the monkeypatch is undone, once stuck there,
    and the attempts so far."""
    monkeypatch, service, method = failing
    calls = saga.fail_first(monkeypatch, service, method, BROKEN)
    order = new_saga_input(settings).model_copy(update={"stuck_policy": policy})
    handle = await saga.start(client, order)
    await saga.wait_for_status(handle, OrderStatus.STEP_STUCK, attempts=400)
    return handle, calls


async def shown_stuck(handle: Saga, workers: Services, step: str) -> StuckStep:
    """What an operator sees of the stuck order: its state, its search attribute in Temporal,
    its StepStuck event, the read side's GET /orders?status=STEP_STUCK."""
    state = await handle.query(OrderSaga.state)
    stuck = state.stuck_step
    assert state.status is OrderStatus.STEP_STUCK and stuck is not None and stuck.step == step
    assert state.stuck is None  # that one is a compensation's
    described = await handle.describe()
    assert described.typed_search_attributes.get(ORDER_STATUS) == "STEP_STUCK"
    event = (await stored_events(workers, state.order_id, "StepStuck"))[0]
    assert event == {"step": step, "error": stuck.last_error}
    assert state.order_id in listed_as_stuck(workers)
    return stuck


def listed_as_stuck(workers: Services) -> list[str]:
    """GET /orders?status=STEP_STUCK, once the read side has caught up."""
    assert workers.projector is not None
    workers.projector.catch_up()
    listed = ReadModel(workers.projector.engine).orders(status=OrderStatus.STEP_STUCK)
    return [row.order_id for row in listed.items]


def timeline(workers: Services, order_id: str) -> list[tuple[str, str]]:
    assert workers.event_store is not None
    return [(e.event_type, e.user_id) for e in workers.event_store.stream(order_id)]


async def replays(handle: Saga) -> None:
    """The dead letter replays like the rest of the saga."""
    replayer = Replayer(workflows=[OrderSaga], data_converter=TEST_CONVERTER)
    await replayer.replay_workflow(await handle.fetch_history())


async def test_a_step_failing_past_its_attempts_is_stuck_until_an_operator_retries_it_now(
    client: Client, settings: Settings, workers: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = (monkeypatch, workers.inventory, "reserve")
    handle, calls = await stuck_in(client, settings, failing, StuckPolicy(attempts=3))
    stuck = await shown_stuck(handle, workers, "inventory.reserve")
    # A library's message is withheld (activities/failures.py): the type says what failed.
    assert stuck.last_error == f"ConnectionError: {WITHHELD}"
    assert len(calls) in (3, 4)  # the policy's attempts, then reported (and a round begun)

    # Still retried, in rounds: the first round's first attempt runs at once, and fails; its
    # next waits a minute (backing off to the policy's cap). The operator need not wait.
    assert await retried_in_a_round(handle, "inventory.reserve") == 2
    assert (await handle.query(OrderSaga.state)).status is OrderStatus.STEP_STUCK
    monkeypatch.undo()  # inventory's database is back
    charging = saga.hold(monkeypatch, workers.payment, "charge")
    accepted = await handle.execute_update(OrderSaga.retry_step, RetryStepUpdate(by="alice"))
    assert accepted.status is OrderStatus.STEP_STUCK  # until the new round succeeds
    await charging.entered()
    # Unstuck, and no longer found as stuck in Temporal's visibility either.
    described = await handle.describe()
    assert described.typed_search_attributes.get(ORDER_STATUS) == "RESERVING_INVENTORY"
    charging.open()
    state = await saga.outcome(handle)

    assert state.status is OrderStatus.COMPLETED and state.stuck_step is None
    assert ("inventory.reserve", "COMPLETED") in saga.outline(state.steps)
    assert len(calls) == 4  # the policy's 3, then the first round's first at once
    assert_books_balance(workers, [state.total_cents or 0])
    story = timeline(workers, state.order_id)
    assert [e for e in story if e[0].startswith("Step")] == [
        ("StepStuck", "system"),
        ("StepRetried", "alice"),
    ]
    assert story[-1] == ("OrderCompleted", "system")
    assert listed_as_stuck(workers) == []  # the read side lists it stuck no more
    await replays(handle)


async def test_after_ten_minutes_of_failures_a_step_is_stuck_and_an_operator_aborts_the_order(
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    workers: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    saga.fail_first(monkeypatch, workers.shipping, "create", BROKEN)
    # Attempts enough to outlast the policy's 10 minutes: the time limit decides.
    order = new_saga_input(settings).model_copy(update={"stuck_policy": StuckPolicy(attempts=999)})
    handle = await saga.start(temporal_env.client, order)
    await saga.wait_for_status(handle, OrderStatus.CREATING_SHIPMENT)
    assert (await handle.query(OrderSaga.state)).stuck_step is None
    await temporal_env.sleep(timedelta(minutes=10, seconds=1))
    await saga.wait_for_status(handle, OrderStatus.STEP_STUCK, attempts=400)
    stuck = await shown_stuck(handle, workers, "shipping.create")
    # The limit that ended the retries was a timeout; the error shown is the last attempt's.
    assert stuck.last_error == f"ConnectionError: {WITHHELD}"

    reason = "carrier down for days, ticket 4711"
    accepted = await handle.execute_update(
        OrderSaga.abort, AbortOrderUpdate(reason=reason, by="bob")
    )
    assert accepted.order_id == order.order_id
    state = await saga.outcome(handle)

    assert state.status is OrderStatus.FAILED and state.stuck_step is None
    assert state.failure is not None and state.failure.type == "AbortedByOperator"
    assert state.failure.message.startswith(f"{reason} (while shipping.create was stuck: ")
    assert ("shipping.create", "FAILED") in saga.outline(state.steps)
    assert saga.outline(state.compensations) == [  # in reverse, as after any failure
        ("shipping.cancel", "COMPLETED"),
        ("payment.refund", "COMPLETED"),
        ("inventory.release", "COMPLETED"),
    ]
    assert_books_balance(workers, [])  # every cent refunded, every unit back
    assert stock(workers)["SKU-A"] == (100, 0)
    story = timeline(workers, order.order_id)
    assert story[-7:] == [
        ("StepStuck", "system"),
        ("OrderAborted", "bob"),
        ("CompensationStarted", "system"),
        ("ShipmentCancelled", "system"),
        ("PaymentRefunded", "system"),
        ("InventoryReleased", "system"),
        ("OrderFailed", "system"),
    ]
    aborted = await stored_events(workers, order.order_id, "OrderAborted")
    assert aborted == [{"step": "shipping.create", "error": stuck.last_error, "reason": reason}]
    assert "ShipmentFailed" not in [e[0] for e in story]  # shipping never refused it
    await replays(handle)


async def test_operators_cannot_retry_or_abort_an_order_whose_step_is_not_stuck(
    client: Client, settings: Settings, workers: Services
) -> None:
    handle = await saga.start(client, new_saga_input(settings, token="tok_review"))
    await saga.wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
    for update, argument in (
        (OrderSaga.retry_step, RetryStepUpdate()),
        (OrderSaga.abort, AbortOrderUpdate()),
    ):
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(update, argument)  # type: ignore[arg-type]
        assert "order is AWAITING_PAYMENT_REVIEW, no step is stuck" in str(refused.value.cause)
    await handle.cancel()
    assert (await saga.outcome(handle)).status is OrderStatus.CANCELLED


async def test_past_the_point_of_no_return_a_stuck_step_is_retried_but_never_aborted(
    client: Client, settings: Settings, workers: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipment exists: as a cancel, an abort is refused; the commit is retried."""
    failing = (monkeypatch, workers.inventory, "commit")
    handle, _ = await stuck_in(client, settings, failing, StuckPolicy(attempts=2))
    await shown_stuck(handle, workers, "inventory.commit")
    tracking = (await handle.query(OrderSaga.state)).tracking_number
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(OrderSaga.abort, AbortOrderUpdate(by="bob"))
    assert f"shipment {tracking} is already created; too late to abort" in str(refused.value.cause)
    monkeypatch.undo()
    await handle.execute_update(OrderSaga.retry_step, RetryStepUpdate())
    state = await saga.outcome(handle)
    assert state.status is OrderStatus.COMPLETED
    retried = [e for e in timeline(workers, state.order_id) if e[0] == "StepRetried"]
    assert retried == [("StepRetried", "operator")]  # the static operator token names no one


async def test_a_stuck_order_can_be_cancelled_and_then_no_longer_aborted(
    client: Client, settings: Settings, workers: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its customer may give up on an order whose charge is stuck: cancelled, and undone."""
    failing = (monkeypatch, workers.payment, "charge")
    handle, _ = await stuck_in(client, settings, failing, StuckPolicy(attempts=2))
    await handle.execute_update(OrderSaga.cancel, CancelOrder(reason="I'll buy it elsewhere"))
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(OrderSaga.abort, AbortOrderUpdate())
    why = str(refused.value.cause)  # as the saga stands when it arrives
    assert "order was cancelled" in why or "no step is stuck" in why, why
    state = await saga.outcome(handle)
    assert state.status is OrderStatus.CANCELLED and state.stuck_step is None
    assert ("payment.charge", "CANCELLED") in saga.outline(state.steps)
    assert saga.outline(state.compensations) == [
        ("payment.refund", "COMPLETED"),
        ("inventory.release", "COMPLETED"),
    ]
    assert_books_balance(workers, [])
    story = [e[0] for e in timeline(workers, state.order_id)]
    assert story[-5:] == [
        "StepStuck",
        "CompensationStarted",
        "PaymentRefunded",
        "InventoryReleased",
        "OrderCancelled",
    ]
