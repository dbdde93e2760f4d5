"""The saga's logic alone: its services replaced by activities of the same names, in the style of
temporalio/samples-python's tests (``@activity.defn(name=...)``). Which steps run, in which
order, with what, and which compensations when one fails or the order is cancelled; no
database, in milliseconds. The real services run under the saga in test_order_saga.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from cloudmart.contracts.events import Appended, AppendEvents
from cloudmart.contracts.orders import CancelOrder, OrderSagaInput, OrderStatus, saga_input
from cloudmart.contracts.routing import TaskQueues
from cloudmart.contracts.steps import (
    ChargePayment,
    ChargeResult,
    ChargeStatus,
    CheckFraud,
    CommitInventory,
    Compensate,
    CompensationResult,
    CreateShipment,
    FraudAssessment,
    Reservation,
    ReservedLine,
    ReserveInventory,
    ShipmentResult,
    Undo,
)
from tests.support import place_order
from tests.workflows.saga_helpers import outcome, start, wait_for_status
from workflows.order_saga import OrderSaga


class Services:
    """Stand-ins for inventory, payment, shipping and the event store: each call is written down
    as ``(activity, order id)``; ``fail`` names the activity that refuses for good."""

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail
        self.events: list[str] = []
        self.shipping_started = asyncio.Event()
        self.hold_shipping = False

    def called(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail:
            raise ApplicationError(f"{name} refused", type="Refused", non_retryable=True)

    def activities(self) -> dict[str, list[object]]:
        @activity.defn(name="inventory.reserve")
        async def reserve(request: ReserveInventory) -> Reservation:
            self.called("inventory.reserve")
            lines = [
                ReservedLine(sku=i.sku, quantity=i.quantity, unit_price_cents=1000)
                for i in request.items
            ]
            return Reservation(
                order_id=request.order_id,
                lines=lines,
                total_cents=1000 * sum(i.quantity for i in request.items),
            )

        @activity.defn(name="payment.check_fraud")
        async def check_fraud(request: CheckFraud) -> FraudAssessment:
            self.called("payment.check_fraud")
            return FraudAssessment(order_id=request.order_id, score=0)

        @activity.defn(name="payment.charge")
        async def charge(request: ChargePayment) -> ChargeResult:
            self.called(f"payment.charge {request.amount_cents}")
            return ChargeResult(
                order_id=request.order_id,
                status=ChargeStatus.CAPTURED,
                amount_cents=request.amount_cents,
                reference="ch-1",
            )

        @activity.defn(name="shipping.create")
        async def ship(request: CreateShipment) -> ShipmentResult:
            self.shipping_started.set()
            while self.hold_shipping:
                await asyncio.sleep(0.05)
                activity.heartbeat()
            self.called("shipping.create")
            return ShipmentResult(order_id=request.order_id, tracking_number="CM-1")

        @activity.defn(name="inventory.commit")
        async def commit(request: CommitInventory) -> Reservation:
            self.called("inventory.commit")
            return Reservation(order_id=request.order_id, lines=[], total_cents=2000)

        def undo(name: str) -> object:  # one activity per compensation, all of one shape
            @activity.defn(name=name)
            async def compensate(request: Compensate) -> CompensationResult:
                self.called(name)
                return CompensationResult(outcome=Undo.UNDONE)

            return compensate

        @activity.defn(name="event_store.append")
        async def append(request: AppendEvents) -> Appended:
            self.events += [event.event_type for event in request.events]
            return Appended(appended=len(request.events))

        return {
            "inventory": [reserve, commit, undo("inventory.release")],
            "payment": [check_fraud, charge, undo("payment.refund")],
            "shipping": [ship, undo("shipping.cancel")],
            "orders": [append],
        }


@asynccontextmanager
async def running(client: Client, services: Services) -> AsyncIterator[OrderSagaInput]:
    """The saga's worker and the stand-ins, each on its queue; yields an order to start."""
    queues = TaskQueues.with_prefix(f"logic-{uuid.uuid4().hex[:8]}")
    async with AsyncExitStack() as stack:
        for service, activities in services.activities().items():
            await stack.enter_async_context(
                Worker(
                    client,
                    task_queue=queues.for_service(service),
                    workflows=[OrderSaga] if service == "orders" else [],
                    activities=activities,
                    disable_eager_activity_execution=True,  # see the saga_workers fixture
                )
            )
        yield saga_input(
            str(uuid.uuid4()),
            place_order((("SKU-A", 2),)),
            payment_review_timeout=timedelta(hours=24),
            task_queues=queues,
        )


FORWARD = [
    "inventory.reserve",
    "payment.check_fraud",
    "payment.charge 2000",
    "shipping.create",
    "inventory.commit",
]


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
    services = Services()
    services.hold_shipping = True
    async with running(client, services) as order:
        handle = await start(client, order)
        await asyncio.wait_for(services.shipping_started.wait(), 10)
        await handle.execute_update(OrderSaga.cancel, CancelOrder(reason="changed my mind"))
        services.hold_shipping = False
        await wait_for_status(handle, OrderStatus.CANCELLED)
        state = await outcome(handle)
    assert state.cancel_reason == "changed my mind"
    undone = [call for call in services.calls if call not in FORWARD]
    assert undone == ["shipping.cancel", "payment.refund", "inventory.release"]
    assert services.events[-1] == "OrderCancelled"
