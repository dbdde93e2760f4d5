"""The saga's logic alone: its services replaced by activities of the same names, in the style of
temporalio/samples-python's tests (``@activity.defn(name=...)``). Which steps run, in which
order, with what, and which compensations when one fails or the order is cancelled; no
database, in milliseconds. The real services run under the saga in test_order_saga.py."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import Client, WorkflowFailureError

from cloudmart.contracts.orders import CancelOrder, OrderStatus
from tests.workflows.saga_helpers import outcome, start, wait_for_status
from tests.workflows.stand_ins import FORWARD, Services, running
from workflows.order_saga import OrderSaga


async def test_each_step_runs_once_in_order_and_nothing_is_undone(client: Client) -> None:
    services = Services()
    async with running(client, services) as order:
        state = await outcome(await start(client, order))
    assert state.status is OrderStatus.COMPLETED and state.total_cents == 2000
    assert services.calls == FORWARD
    assert services.events[0] == "OrderPlaced" and services.events[-1] == "OrderCompleted"


@pytest.mark.parametrize(
    ("failing", "undone"),
    [
        ("inventory.reserve", ["inventory.release"]),
        ("payment.check_fraud", ["inventory.release"]),  # the screen only reads
        ("payment.charge 2000", ["payment.refund", "inventory.release"]),
        ("shipping.create", ["shipping.cancel", "payment.refund", "inventory.release"]),
    ],
)
async def test_a_step_that_fails_undoes_what_was_pushed_in_reverse(
    client: Client, failing: str, undone: list[str]
) -> None:
    services = Services(fail=failing)
    async with running(client, services) as order:
        handle = await start(client, order)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        state = await outcome(handle)
    assert state.status is OrderStatus.FAILED
    assert state.failure is not None and state.failure.type == "Refused"
    ran = FORWARD[: FORWARD.index(failing) + 1]
    assert services.calls == ran + undone  # its own compensation too: it may have taken effect
    assert services.events[-1] == "OrderFailed"


async def test_a_cancel_during_a_step_undoes_it_and_everything_before(client: Client) -> None:
    services = Services(hold="shipping.create")
    async with running(client, services) as order:
        handle = await start(client, order)
        await asyncio.wait_for(services.held.wait(), 10)
        await handle.execute_update(OrderSaga.cancel, CancelOrder(reason="changed my mind"))
        services.release.set()
        await wait_for_status(handle, OrderStatus.CANCELLED)
        state = await outcome(handle)
    assert state.cancel_reason == "changed my mind"
    undone = [call for call in services.calls if call not in FORWARD]
    assert undone == ["shipping.cancel", "payment.refund", "inventory.release"]
    assert services.events[-1] == "OrderCancelled"
