"""Upgrading sagas in flight, the worked example of docs/versioning.md: the fraud screen added to
the released saga behind ``workflow.patched("fraud-check")``; and the customers step added to 1.0
behind ``workflow.patched("customer-step")``.

The saga before a patch is today's code with that patch not taken: exactly what
``if workflow.patched(...)`` makes the old branch, command for command. The upgrade is the switch
from that code to today's, under a worker that keeps no saga in memory: each of its workflow
tasks replays the saga's whole history first, as a freshly deployed worker does. (The recorded
histories of the sagas before each patch are replayed by test_replay.py.)
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from cloudmart.contracts.orders import OrderState, OrderStatus, PaymentReviewDecision
from cloudmart.settings import Settings
from services.factory import Services
from tests.support import assert_reconciled, new_saga_input
from tests.workflows import stand_ins
from tests.workflows.saga_helpers import (
    before_the_customer_step,
    before_the_screen,
    outcome,
    outline,
    patches_taken,
    start,
    wait_for_status,
)
from worker import running_workers
from workflows.order_saga import CUSTOMER_STEP, FRAUD_SCREEN, OrderSaga

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


async def patch_markers(handle: WorkflowHandle[OrderSaga, OrderState]) -> int:
    return sum(
        [
            event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
            async for event in handle.fetch_history_events()
        ]
    )


async def test_a_saga_held_for_review_before_the_screen_finishes_without_it(
    client: Client,
    settings: Settings,
    uncached_workers: Workers,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with uncached_workers(services):
        with monkeypatch.context() as old_code:
            before_the_screen(old_code)
            handle = await start(client, new_saga_input(settings, token="tok_review"))
            await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
        assert await patch_markers(handle) == 0

        # Today's code replays the history (no screen in it), then goes on without one.
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
    assert await patch_markers(handle) == 0
    assert services.event_store is not None
    timeline = [e.event_type for e in services.event_store.stream(state.order_id)]
    assert "FraudCheckPassed" not in timeline and timeline[-1] == "OrderCompleted"
    assert_reconciled(services, [state])


async def test_a_saga_still_reserving_before_the_screen_is_screened_after_the_upgrade(
    client: Client,
    settings: Settings,
    uncached_workers: Workers,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with uncached_workers(Services(event_store=services.event_store)):
        with monkeypatch.context() as old_code:
            before_the_screen(old_code)
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
    assert await patch_markers(handle) == 1  # the screen's patch, recorded where it was taken
    assert services.payment is not None and services.payment.totals().charges_by_status == {}
    assert_reconciled(services, [state])


# --- the customers step: 1.0 -> today ---------------------------------------------------------
# The services are stand-ins (tests/workflows/stand_ins.py; its saga worker keeps no saga in
# memory either): what is upgraded is the workflow, and the stand-ins record every call.


async def test_a_1_0_saga_held_for_review_finishes_without_the_customers_step(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = stand_ins.Services(review=True)
    async with stand_ins.running(client, services, guest=True) as order:
        with monkeypatch.context() as old_code:
            before_the_customer_step(old_code)
            held = await start(client, order)
            await wait_for_status(held, OrderStatus.AWAITING_PAYMENT_REVIEW)
        assert await patches_taken(held) == [FRAUD_SCREEN]

        # Today's code replays 1.0's history (no customers step at its start), then goes on.
        await held.execute_update(OrderSaga.review_payment, PaymentReviewDecision(approved=True))
        state = await outcome(held)
        assert state.status is OrderStatus.COMPLETED
        assert "customers.ensure" not in services.calls
        assert "CustomerChecked" not in services.events
        assert await patches_taken(held) == [FRAUD_SCREEN]

        # A saga started on today's code runs the step first.
        services.review, services.calls = False, []
        new = await start(client, order.model_copy(update={"order_id": str(uuid.uuid4())}))
        assert (await outcome(new)).status is OrderStatus.COMPLETED
    assert services.calls == stand_ins.FORWARD
    assert await patches_taken(new) == [CUSTOMER_STEP, FRAUD_SCREEN]


async def test_a_1_0_saga_that_fails_after_the_upgrade_cancels_no_user(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1.0 never pushed Cancel User, so its compensations on today's code do not include it."""
    services = stand_ins.Services(review=True)
    async with stand_ins.running(client, services, guest=True) as order:
        with monkeypatch.context() as old_code:
            before_the_customer_step(old_code)
            held = await start(client, order)
            await wait_for_status(held, OrderStatus.AWAITING_PAYMENT_REVIEW)
        await held.execute_update(OrderSaga.review_payment, PaymentReviewDecision(approved=False))
        state = await outcome(held)
    assert state.status is OrderStatus.FAILED
    assert [c.name for c in state.compensations] == ["payment.refund", "inventory.release"]
    assert "customers.cancel_user" not in services.calls
