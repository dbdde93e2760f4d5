"""An accepted cancel or review decision is a promise, also when it races the saga.

The races are made deterministic: the saga's worker is stopped while a step finishes and the
updates arrive, so that the next workflow task carries them all at once, which is what happens
by chance under load (the SDK then runs the update handlers before it applies the step's
result). Each test checks from the history that the race it stages did take place.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, UpdateWorkflowExecutionLifecycleStage
from temporalio.api.update.v1 import UpdateRef, WaitPolicy
from temporalio.api.workflowservice.v1 import PollWorkflowExecutionUpdateRequest
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateHandle,
    WorkflowUpdateStage,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from cloudmart.contracts.orders import (
    CancelOrder,
    OrderSagaInput,
    OrderState,
    OrderStatus,
    PaymentReviewDecision,
    UpdateAccepted,
)
from tests.workflows.saga_helpers import outcome, start, wait_for_status
from tests.workflows.stand_ins import FORWARD, Services, running, worker
from workflows.order_saga import OrderSaga

Saga = WorkflowHandle[OrderSaga, OrderState]
UNDO = {
    "inventory.reserve": "inventory.release",
    "payment.charge 2000": "payment.refund",
    "shipping.create": "shipping.cancel",
}


@asynccontextmanager
async def saga_worker(
    client: Client, services: Services, order: OrderSagaInput
) -> AsyncIterator[None]:
    async with worker(client, services, order.task_queues, "orders"):
        yield


async def admitted(client: Client, handle: Saga, update_id: str) -> None:
    """Wait until the server holds the update (no worker has seen it yet)."""
    request = PollWorkflowExecutionUpdateRequest(
        namespace=client.namespace,
        update_ref=UpdateRef(
            workflow_execution=WorkflowExecution(workflow_id=handle.id), update_id=update_id
        ),
        wait_policy=WaitPolicy(
            lifecycle_stage=UpdateWorkflowExecutionLifecycleStage.UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_ADMITTED
        ),
    )
    for _ in range(200):
        try:
            await client.workflow_service.poll_workflow_execution_update(request)
            return
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise
        await asyncio.sleep(0.05)
    raise AssertionError(f"update {update_id} never reached the server")


async def send(
    client: Client, handle: Saga, update_id: str, update: object, arg: object
) -> asyncio.Task[WorkflowUpdateHandle[UpdateAccepted]]:
    """Send an update while no saga worker runs; the task ends once a worker accepts or
    refuses it."""
    sent = asyncio.create_task(
        handle.start_update(
            update,  # type: ignore[arg-type]
            arg,
            id=update_id,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
    )
    await admitted(client, handle, update_id)
    return sent


async def answer(sent: asyncio.Task[WorkflowUpdateHandle[UpdateAccepted]]) -> str:
    """ "accepted", or the refusal's type and message (the API's 409)."""
    try:
        await (await sent).result()
        return "accepted"
    except WorkflowUpdateFailedError as err:
        assert isinstance(err.cause, ApplicationError)
        return f"{err.cause.type}: {err.cause.message}"


async def tasks_between(handle: Saga, first: int, then: int) -> int:
    """How many workflow tasks completed between two events of the history."""
    completed = await event_ids(handle, EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    return sum(1 for event_id in completed if first < event_id < then)


async def completion(handle: Saga, activity: str) -> int:
    """Wait for ``activity`` to complete; the id of its ActivityTaskCompleted event."""
    for _ in range(200):
        scheduled: set[int] = set()
        async for event in handle.fetch_history_events():
            if event.activity_task_scheduled_event_attributes.activity_type.name == activity:
                scheduled.add(event.event_id)
            if event.activity_task_completed_event_attributes.scheduled_event_id in scheduled:
                return event.event_id
        await asyncio.sleep(0.05)
    raise AssertionError(f"{activity} never completed")


async def event_ids(handle: Saga, event_type: int) -> list[int]:
    return [e.event_id async for e in handle.fetch_history_events() if e.event_type == event_type]


@pytest.mark.parametrize("step", ["inventory.reserve", "payment.charge 2000", "shipping.create"])
async def test_a_cancel_accepted_with_a_steps_result_cancels_the_order(
    client: Client, step: str
) -> None:
    services = Services(hold=step)
    async with running(client, services, saga=False) as order:
        handle = await start(client, order)
        async with saga_worker(client, services, order):
            await asyncio.wait_for(services.held.wait(), 10)
        services.release.set()  # the step ends while no saga worker runs ...
        step_done = await completion(handle, step.split()[0])
        cancel = await send(client, handle, "cancel", OrderSaga.cancel, CancelOrder(reason="no"))
        async with saga_worker(client, services, order):  # ... and one task brings both
            assert await answer(cancel) == "accepted"
            state = await outcome(handle)
    accepted = await event_ids(handle, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    assert await tasks_between(handle, step_done, accepted[0]) == 1, "the race did not happen"
    assert state.status is OrderStatus.CANCELLED and state.cancel_reason == "no"
    done = FORWARD[: FORWARD.index(step) + 1]
    undone = [UNDO[s] for s in reversed(done) if s in UNDO]
    assert services.calls == done + undone  # the next step never ran; this one is undone too
    assert services.events[-1] == "OrderCancelled"


async def held_for_review(client: Client, services: Services, order: OrderSagaInput) -> Saga:
    handle = await start(client, order)
    async with saga_worker(client, services, order):
        await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
    return handle


APPROVE, REJECT = PaymentReviewDecision(approved=True), PaymentReviewDecision(approved=False)


@pytest.mark.parametrize(
    ("first", "second", "refusal", "ends"),
    [
        (
            (OrderSaga.cancel, CancelOrder(reason="no")),
            (OrderSaga.review_payment, APPROVE),
            "NotAwaitingReview: order was cancelled before the decision",
            OrderStatus.CANCELLED,
        ),
        (
            (OrderSaga.review_payment, APPROVE),
            (OrderSaga.cancel, CancelOrder(reason="no")),
            "CancelRefused: the payment review was just approved; that decision is being applied",
            OrderStatus.COMPLETED,
        ),
        (
            (OrderSaga.review_payment, APPROVE),
            (OrderSaga.review_payment, REJECT),
            "AlreadyReviewed: the payment review was already approved",
            OrderStatus.COMPLETED,
        ),
        (
            (OrderSaga.review_payment, REJECT),
            (OrderSaga.review_payment, APPROVE),
            "AlreadyReviewed: the payment review was already rejected",
            OrderStatus.FAILED,
        ),
    ],
    ids=[
        "cancel-then-approve",
        "approve-then-cancel",
        "approve-then-reject",
        "reject-then-approve",
    ],
)
async def test_of_two_racing_decisions_the_first_accepted_is_applied(
    client: Client,
    first: tuple[object, object],
    second: tuple[object, object],
    refusal: str,
    ends: OrderStatus,
) -> None:
    services = Services(review=True)
    async with running(client, services, saga=False) as order:
        handle = await held_for_review(client, services, order)
        one = await send(client, handle, "first", *first)
        two = await send(client, handle, "second", *second)
        async with saga_worker(client, services, order):  # one task brings both
            assert await answer(one) == "accepted"
            assert await answer(two) == refusal  # the 409 says what won
            state = await outcome(handle)
    assert state.status is ends
    accepted = await event_ids(handle, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    assert len(accepted) == 1
    reviewed = [call for call in services.calls if call.startswith("payment.resolve_review")]
    if ends is OrderStatus.CANCELLED:
        assert reviewed == [] and services.calls[-2:] == ["payment.refund", "inventory.release"]
    else:
        assert reviewed == [f"payment.resolve_review {ends is OrderStatus.COMPLETED}"]
