"""The saga with the workflow sandbox off (CLOUDMART_WORKFLOW_SANDBOX=false): the same outcomes
in both step modes, and histories that the sandboxed replayer accepts, so that a deployment can
turn the sandbox off or on again without breaking a saga in flight."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from temporalio.client import Client
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from cloudmart.contracts.orders import OrderSagaInput, OrderStatus, StepMode
from cloudmart.settings import Settings
from services.factory import Services
from tests.support import TEST_CONVERTER, assert_books_balance, new_saga_input, stock
from tests.workflows.saga_helpers import one_worker, outcome, start
from workflows.order_saga import OrderSaga

MODES = pytest.mark.parametrize("mode", list(StepMode), ids=[m.value for m in StepMode])


@asynccontextmanager
async def unsandboxed_workers(
    client: Client, settings: Settings, services: Services, mode: StepMode
) -> AsyncIterator[None]:
    async with one_worker(
        client, settings, services, local_steps=mode is StepMode.LOCAL, sandboxed=False
    ) as workers:
        runners = [w.config().get("workflow_runner") for w in workers if w.config()["workflows"]]
        assert len(runners) == 1 and isinstance(runners[0], UnsandboxedWorkflowRunner)
        yield


def in_mode(saga: OrderSagaInput, mode: StepMode) -> OrderSagaInput:
    return saga.model_copy(update={"step_mode": mode})


async def replays_sandboxed(history: object) -> None:
    replayer = Replayer(workflows=[OrderSaga], data_converter=TEST_CONVERTER)  # the sandbox's
    await replayer.replay_workflow(history)  # type: ignore[arg-type]  # raises if it differs


@MODES
async def test_an_unsandboxed_saga_completes_and_replays_in_the_sandbox(
    client: Client, settings: Settings, services: Services, mode: StepMode
) -> None:
    async with unsandboxed_workers(client, settings, services, mode):
        saga = in_mode(new_saga_input(settings, (("SKU-A", 2),)), mode)
        handle = await start(client, saga)
        state = await outcome(handle)

    assert state.status is OrderStatus.COMPLETED
    assert stock(services)["SKU-A"] == (98, 0)
    assert_books_balance(services, [2000])
    assert services.orders is not None
    events = [e.event_type for e in services.orders.stream(saga.order_id)]
    assert events[0] == "OrderPlaced" and events[-1] == "OrderCompleted"
    await replays_sandboxed(await handle.fetch_history())


@MODES
async def test_an_unsandboxed_saga_compensates_in_reverse_and_replays_in_the_sandbox(
    client: Client, settings: Settings, services: Services, mode: StepMode
) -> None:
    async with unsandboxed_workers(client, settings, services, mode):
        handle = await start(client, in_mode(new_saga_input(settings, country="JP"), mode))
        state = await outcome(handle)

    assert state.status is OrderStatus.FAILED
    assert [(c.name, c.status) for c in state.compensations] == [
        ("shipping.cancel", "COMPLETED"),
        ("payment.refund", "COMPLETED"),
        ("inventory.release", "COMPLETED"),
    ]
    assert_books_balance(services, [])
    await replays_sandboxed(await handle.fetch_history())
