"""The saga with the workflow sandbox off (CLOUDMART_WORKFLOW_SANDBOX=false): the same outcomes,
and histories that the sandboxed replayer accepts, so that a deployment can
turn the sandbox off or on again without breaking a saga in flight."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio.client import Client
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from cloudmart.contracts.orders import OrderStatus
from cloudmart.settings import Settings
from services.factory import Services
from tests.support import TEST_CONVERTER, assert_books_balance, new_saga_input, stock
from tests.workflows.saga_helpers import one_worker, outcome, start
from workflows.order_saga import OrderSaga


@asynccontextmanager
async def unsandboxed_workers(
    client: Client, settings: Settings, services: Services
) -> AsyncIterator[None]:
    async with one_worker(client, settings, services, sandboxed=False) as workers:
        runners = [w.config().get("workflow_runner") for w in workers if w.config()["workflows"]]
        assert len(runners) == 1 and isinstance(runners[0], UnsandboxedWorkflowRunner)
        yield


async def replays_sandboxed(history: object) -> None:
    replayer = Replayer(workflows=[OrderSaga], data_converter=TEST_CONVERTER)  # the sandbox's
    await replayer.replay_workflow(history)  # type: ignore[arg-type]  # raises if it differs


async def test_an_unsandboxed_saga_completes_and_replays_in_the_sandbox(
    client: Client, settings: Settings, services: Services
) -> None:
    async with unsandboxed_workers(client, settings, services):
        saga = new_saga_input(settings, (("SKU-A", 2),))
        handle = await start(client, saga)
        state = await outcome(handle)

    assert state.status is OrderStatus.COMPLETED
    assert stock(services)["SKU-A"] == (98, 0)
    assert_books_balance(services, [2000])
    assert services.event_store is not None
    events = [e.event_type for e in services.event_store.stream(saga.order_id)]
    assert events[0] == "OrderPlaced" and events[-1] == "OrderCompleted"
    await replays_sandboxed(await handle.fetch_history())


async def test_an_unsandboxed_saga_compensates_in_reverse_and_replays_in_the_sandbox(
    client: Client, settings: Settings, services: Services
) -> None:
    async with unsandboxed_workers(client, settings, services):
        handle = await start(client, new_saga_input(settings, country="JP"))
        state = await outcome(handle)

    assert state.status is OrderStatus.FAILED
    assert [(c.name, c.status) for c in state.compensations] == [
        ("shipping.cancel", "COMPLETED"),
        ("payment.refund", "COMPLETED"),
        ("inventory.release", "COMPLETED"),
    ]
    assert_books_balance(services, [])
    await replays_sandboxed(await handle.fetch_history())
