"""When the saga stores its events, and when it moves its search attributes.

Events wait to be stored together: an order whose steps each end within the events window is one
append at its end; a hold for a person, or a step that runs past the window, has the saga store
what it has first. The OrderStatus search attribute moves only for statuses that last (each move
is a history event and a visibility write). The terminal status comes once the events are stored
(test_order_events.py checks that)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from cloudmart.contracts.orders import EVENTS_WINDOW, OrderSagaInput, OrderState, OrderStatus
from cloudmart.contracts.saga import CUSTOMER_ID, ORDER_STATUS, start_search_attributes, workflow_id
from cloudmart.settings import Settings
from services.factory import Services
from tests.support import new_saga_input, place_order
from tests.workflows.saga_helpers import hold, outcome, start, wait_for_status
from workflows.order_saga import OrderSaga


async def appended_batches(handle: WorkflowHandle[OrderSaga, OrderState]) -> int:
    return sum(
        [
            event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and event.activity_task_scheduled_event_attributes.activity_type.name
            == "event_store.append"
            async for event in handle.fetch_history_events()
        ]
    )


async def statuses_upserted(handle: WorkflowHandle[OrderSaga, OrderState]) -> list[str]:
    upserted = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            payload = fields.indexed_fields.get(ORDER_STATUS.name)
            if payload is not None:
                upserted.append(payload.data.decode().strip('"'))
    return upserted


def timeline(workers: Services, order_id: str) -> list[str]:
    assert workers.event_store is not None
    return [e.event_type for e in workers.event_store.stream(order_id)]


async def start_as_the_api_does(
    client: Client, saga: OrderSagaInput
) -> WorkflowHandle[OrderSaga, OrderState]:
    return await client.start_workflow(
        OrderSaga.run,
        saga,
        id=workflow_id(saga.order_id),
        task_queue=saga.task_queues.orders,
        search_attributes=start_search_attributes(saga.customer_id),
    )


async def test_an_order_that_ends_within_the_window_stores_its_events_in_one_append(
    client: Client, settings: Settings, workers: Services
) -> None:
    handle = await start_as_the_api_does(client, new_saga_input(settings))
    state = await outcome(handle)
    assert state.status is OrderStatus.COMPLETED
    assert await appended_batches(handle) == 1
    assert len(timeline(workers, state.order_id)) == 8
    # Started with its search attributes, as the API does: only the end moves them.
    assert await statuses_upserted(handle) == ["COMPLETED"]
    description = await handle.describe()
    assert description.typed_search_attributes.get(ORDER_STATUS) == "COMPLETED"


async def test_a_saga_started_without_search_attributes_sets_them_first(
    client: Client, settings: Settings, workers: Services
) -> None:
    handle = await start(client, new_saga_input(settings, country="JP"))  # FAILED, compensated
    await outcome(handle)
    assert await statuses_upserted(handle) == ["PENDING", "COMPENSATING", "FAILED"]
    description = await handle.describe()
    assert description.typed_search_attributes.get(CUSTOMER_ID) == "c-42"


async def test_a_waiting_saga_has_its_events_stored_within_the_window(
    client: Client,
    settings: Settings,
    workers: Services,
    temporal_env: WorkflowEnvironment,
) -> None:
    """Held for a payment review, its story so far reaches the store as the hold begins (the
    saga stores what it has before it waits for a person), not when the review ends; the hold
    is a lasting status, so the search attribute shows it."""
    handle = await start_as_the_api_does(client, new_saga_input(settings, token="tok_review"))
    await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
    order_id = handle.id.removeprefix("order-")
    assert await stored_when_the_window_ends(temporal_env, workers, order_id, timedelta(0)) == [
        "OrderPlaced",
        "CustomerChecked",
        "InventoryReserved",
        "FraudCheckPassed",
        "PaymentReviewRequested",
    ]
    assert await statuses_upserted(handle) == ["AWAITING_PAYMENT_REVIEW"]
    await handle.cancel()
    state = await outcome(handle)
    assert state.status is OrderStatus.CANCELLED
    assert timeline(workers, order_id)[-1] == "OrderCancelled"


async def stored_when_the_window_ends(
    temporal_env: WorkflowEnvironment, workers: Services, order_id: str, window: timedelta
) -> list[str]:
    """The order's timeline once ``window`` has passed (in skipped time) and its append ran."""
    await temporal_env.sleep(window + timedelta(milliseconds=500))
    for _ in range(100):
        if stored := timeline(workers, order_id):
            return stored
        await temporal_env.sleep(timedelta(milliseconds=100))
    return []


async def stored_while_held(workers: Services, order_id: str, expected: list[str]) -> None:
    """Wait until the order's stored timeline is ``expected`` (the append runs in the background,
    after the saga decided to store); an AssertionError if it never is."""
    deadline = time.monotonic() + 10
    while (stored := timeline(workers, order_id)) != expected:
        assert time.monotonic() < deadline, f"stored {stored}, never {expected}, while the step ran"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("window", "stored_meanwhile"),
    [(EVENTS_WINDOW, ["OrderPlaced", "CustomerChecked"]), (timedelta(seconds=30), [])],
    ids=["1s", "30s"],
)
async def test_a_step_running_past_the_window_has_the_events_before_it_stored(
    window: timedelta,
    stored_meanwhile: list[str],
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    workers: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A first attempt that runs past the window (here the reservation, held at its start while
    the saga's clock moves past a 1 s window) makes the saga store what it has recorded, while
    the step goes on; CLOUDMART_EVENTS_WINDOW reaches the saga through its input, so a 30 s
    window keeps them for the end."""
    saga = settings.model_copy(update={"events_window": window}).saga_input(
        str(uuid.uuid4()), place_order((("SKU-A", 1),))
    )
    assert saga.events_window == window
    reservations = hold(monkeypatch, workers.inventory, "reserve")
    handle = await start_as_the_api_does(temporal_env.client, saga)
    try:
        await reservations.entered()  # the first attempt runs, bounded by the window
        # Past a 1 s window in the saga's time, well within the 10 s a step may run. (The
        # test server lets no time skip while an activity runs: this takes its real 1.2 s.)
        await temporal_env.sleep(EVENTS_WINDOW + timedelta(milliseconds=200))
        # The first attempt is still held at its start: what is stored now was stored while the
        # step ran. (That a 30 s window stored nothing meanwhile is proved at the end: a single
        # append.)
        await stored_while_held(workers, saga.order_id, stored_meanwhile)
    finally:
        reservations.open()
    state = await outcome(handle)
    assert state.status is OrderStatus.COMPLETED
    stored = timeline(workers, saga.order_id)
    assert stored[0] == "OrderPlaced" and stored[-1] == "OrderCompleted" and len(stored) == 8
    assert await appended_batches(handle) == 1 + bool(stored_meanwhile)
