"""The saga records every transition as an event, once; an order's state is a fold of them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from cloudmart.contracts.events import Event, EventType
from cloudmart.contracts.orders import (
    CancelOrder,
    OrderState,
    OrderStatus,
    PaymentReviewDecision,
    StepStatus,
)
from cloudmart.settings import Settings
from services.event_store.aggregate import replay
from services.factory import Services
from tests.support import Gate, assert_reconciled, new_saga_input
from tests.workflows.saga_helpers import activity_attempts, outcome, start, wait_for_status
from workflows.order_saga import OrderSaga


def timeline(workers: Services, order_id: str) -> list[str]:
    assert workers.event_store is not None
    return [e.event_type for e in workers.event_store.stream(order_id)]


async def test_a_completed_order_has_its_whole_story(
    client: Client, settings: Settings, workers: Services
) -> None:
    state = await outcome(await start(client, new_saga_input(settings)))
    assert timeline(workers, state.order_id) == [
        "OrderPlaced",
        "CustomerChecked",
        "InventoryReserved",
        "FraudCheckPassed",
        "PaymentCharged",
        "ShipmentCreated",
        "InventoryCommitted",
        "OrderCompleted",
    ]
    events = workers.event_store.stream(state.order_id)  # type: ignore[union-attr]
    assert [e.sequence for e in events] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert events[0].user_id == "c-42" and events[1].user_id == "system"
    assert events[0].data["country"] == "DE"
    # c-42 was never registered: its orders go on as before the customers service existed.
    assert events[1].data == {"customer_id": "c-42", "registered": False, "created": False}
    assert events[2].data == {
        "lines": [{"sku": "SKU-A", "quantity": 2, "unit_price_cents": 1000}],
        "total_cents": 2000,
    }


async def test_a_failed_order_records_its_failure_and_every_compensation(
    client: Client, settings: Settings, workers: Services
) -> None:
    state = await outcome(await start(client, new_saga_input(settings, country="JP")))
    assert timeline(workers, state.order_id) == [
        "OrderPlaced",
        "CustomerChecked",
        "InventoryReserved",
        "FraudCheckPassed",
        "PaymentCharged",
        "ShipmentFailed",
        "CompensationStarted",
        "ShipmentCancelled",
        "PaymentRefunded",
        "InventoryReleased",
        "OrderFailed",
    ]
    events = {e.event_type: e.data for e in workers.event_store.stream(state.order_id)}  # type: ignore[union-attr]
    assert events["PaymentRefunded"]["outcome"] == "UNDONE"
    assert events["PaymentRefunded"]["amount_cents"] == 2000
    assert events["ShipmentCancelled"]["outcome"] == "NOTHING_TO_UNDO"
    assert events["InventoryReleased"]["lines"] == [
        {"sku": "SKU-A", "quantity": 2, "unit_price_cents": 1000}
    ]


async def test_a_reviewed_and_a_cancelled_order(
    client: Client, settings: Settings, workers: Services
) -> None:
    approved = await start(client, new_saga_input(settings, token="tok_review"))
    cancelled = await start(client, new_saga_input(settings, token="tok_review"))
    for handle in (approved, cancelled):
        await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
    await approved.execute_update(OrderSaga.review_payment, PaymentReviewDecision(approved=True))
    await cancelled.execute_update(OrderSaga.cancel, CancelOrder(reason="too slow"))
    for handle in (approved, cancelled):
        await outcome(handle)

    assert timeline(workers, approved.id.removeprefix("order-"))[4:7] == [
        "PaymentReviewRequested",
        "PaymentReviewed",
        "PaymentCharged",
    ]
    story = workers.event_store.stream(cancelled.id.removeprefix("order-"))  # type: ignore[union-attr]
    assert [e.event_type for e in story][-4:] == [
        "CompensationStarted",
        "PaymentRefunded",
        "InventoryReleased",
        "OrderCancelled",
    ]
    assert story[-1].user_id == "c-42"  # the customer cancelled it
    assert story[-1].data == {"reason": "too slow"}


@pytest.mark.parametrize(
    "scenario",
    [
        {},
        {"items": (("SKU-A", 101),)},
        {"token": "tok_decline"},
        {"country": "JP"},
        {"token": "tok_flaky"},
        {"token": "tok_review"},  # times out after 24 h
    ],
)
async def test_the_fold_of_an_orders_events_is_what_its_saga_reports(
    temporal_env: WorkflowEnvironment, settings: Settings, workers: Services, scenario: dict
) -> None:
    handle = await start(temporal_env.client, new_saga_input(settings, **scenario))
    if scenario.get("token") == "tok_review":
        await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
        await temporal_env.sleep(timedelta(hours=24, seconds=1))
    state: OrderState = await outcome(handle)
    rebuilt = replay(state.order_id, workers.event_store.stream(state.order_id))  # type: ignore[union-attr]
    assert rebuilt.model_dump(include=COMPARED) == state.model_dump(include=COMPARED)
    assert rebuilt.version == len(timeline(workers, state.order_id))
    # Every unit and cent of the outcome, as each service's database recorded it.
    assert_reconciled(workers, [state])


COMPARED = {
    "order_id",
    "customer_id",
    "status",
    "items",
    "total_cents",
    "tracking_number",
    "failure",
    "cancel_reason",
}


def hold_the_last_append(monkeypatch: pytest.MonkeyPatch, workers: Services) -> Gate:
    """Hold the append of the order's final event: the saga has its outcome, its execution is
    still open (it waits for its events to be stored)."""
    store, gate = workers.event_store, Gate()
    assert store is not None
    original = store.append
    final = {EventType.ORDER_COMPLETED, EventType.ORDER_FAILED, EventType.ORDER_CANCELLED}

    def append(events: list[Event]) -> int:
        if any(e.event_type in final for e in events):
            gate.pass_()
        return original(events)

    monkeypatch.setattr(store, "append", append)
    return gate


async def test_a_saga_is_terminal_only_once_its_events_are_stored(
    client: Client, settings: Settings, workers: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever sees a terminal status can read the order's whole timeline."""
    gate = hold_the_last_append(monkeypatch, workers)
    completed = await start(client, new_saga_input(settings))
    await gate.entered()
    storing = await completed.query(OrderSaga.state)
    assert storing.status is OrderStatus.CREATING_SHIPMENT  # every step done, not yet ended
    assert {step.status for step in storing.steps} == {StepStatus.COMPLETED}
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await completed.execute_update(
            OrderSaga.review_payment, PaymentReviewDecision(approved=True)
        )
    assert isinstance(refused.value.cause, ApplicationError)
    assert refused.value.cause.type == "NotAwaitingReview"
    gate.open()
    assert (await outcome(completed)).status is OrderStatus.COMPLETED
    assert timeline(workers, completed.id.removeprefix("order-"))[-1] == "OrderCompleted"


async def test_cancelling_again_while_the_cancel_is_being_stored_is_accepted(
    client: Client, settings: Settings, workers: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = hold_the_last_append(monkeypatch, workers)
    handle = await start(client, new_saga_input(settings, token="tok_review"))
    await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
    await handle.execute_update(OrderSaga.cancel, CancelOrder(reason="changed my mind"))
    await gate.entered()
    again = await handle.execute_update(OrderSaga.cancel, CancelOrder(reason="clicked twice"))
    assert again.status is OrderStatus.COMPENSATING  # cancelled once its events are stored
    gate.open()
    state = await outcome(handle)
    assert state.cancel_reason == "changed my mind"  # the first reason stands
    assert timeline(workers, state.order_id).count("OrderCancelled") == 1


async def test_a_retried_append_and_a_retried_step_store_each_event_once(
    client: Client, settings: Settings, workers: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store commits the first batch, then the answer is lost (the activity fails): the
    retry carries the same event ids and stores nothing again. tok_flaky makes the charge fail
    twice before it succeeds: one PaymentCharged."""
    store = workers.event_store
    assert store is not None
    original, calls = store.append, []

    def answer_lost_once(events: list[Event]) -> int:
        stored = original(events)
        calls.append(stored)
        if len(calls) == 1:
            raise ConnectionError("the answer was lost after the commit")
        return stored

    monkeypatch.setattr(store, "append", answer_lost_once)
    handle = await start(client, new_saga_input(settings, token="tok_flaky"))
    state = await outcome(handle)
    assert state.status is OrderStatus.COMPLETED
    # The first batch (what the window gathered before the flaky charge) stored, then the
    # retry found every one of its events there.
    assert calls[0] >= 1 and calls[1] == 0
    # The history keeps the attempt that completed: the first append's second one.
    assert await activity_attempts(handle, "event_store.append") == [2] + [1] * (len(calls) - 2)
    assert timeline(workers, state.order_id) == [
        "OrderPlaced",
        "CustomerChecked",
        "InventoryReserved",
        "FraudCheckPassed",
        "PaymentCharged",
        "ShipmentCreated",
        "InventoryCommitted",
        "OrderCompleted",
    ]
