"""Stand-ins for the saga's services: activities of the same names, in the style of
temporalio/samples-python's tests (``@activity.defn(name=...)``), each on its service's queue."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from cloudmart.contracts.customers import Guest
from cloudmart.contracts.events import Appended, AppendEvents, Event
from cloudmart.contracts.orders import OrderSagaInput, saga_input
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
    CustomerChecked,
    EnsureCustomer,
    FraudAssessment,
    Reservation,
    ReservedLine,
    ReserveInventory,
    ResolvePaymentReview,
    ShipmentResult,
    Undo,
)
from tests.support import place_order
from workflows.order_saga import OrderSaga


class Services:
    """Stand-ins for customers, inventory, payment, shipping and the event store: each call is
    written down by name; ``fail`` names the activity that refuses for good (with an error of
    type ``fail_type``), ``hold`` the one that waits at its start (``held`` is set) until
    ``release`` is set."""

    def __init__(
        self,
        fail: str | None = None,
        hold: str | None = None,
        review: bool = False,
        fail_type: str = "Refused",
    ) -> None:
        self.calls: list[str] = []
        self.fail = fail
        self.fail_type = fail_type
        self.hold = hold
        self.review = review  # the charge is held for a payment review
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.events: list[str] = []
        self.appended: list[Event] = []

    async def called(self, name: str) -> None:
        if name == self.hold:
            self.held.set()
            while not self.release.is_set():  # heartbeating, so that a cancel reaches it
                activity.heartbeat()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.release.wait(), 0.05)
        self.calls.append(name)
        if name == self.fail:
            raise ApplicationError(f"{name} refused", type=self.fail_type, non_retryable=True)

    def activities(self) -> dict[str, list[object]]:
        @activity.defn(name="customers.ensure")
        async def ensure(request: EnsureCustomer) -> CustomerChecked:
            await self.called("customers.ensure")
            guest = request.guest is not None
            return CustomerChecked(
                order_id=request.order_id,
                customer_id=request.customer_id,
                registered=True,
                created=guest,
            )

        @activity.defn(name="inventory.reserve")
        async def reserve(request: ReserveInventory) -> Reservation:
            await self.called("inventory.reserve")
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
            await self.called("payment.check_fraud")
            return FraudAssessment(order_id=request.order_id, score=0)

        @activity.defn(name="payment.charge")
        async def charge(request: ChargePayment) -> ChargeResult:
            await self.called(f"payment.charge {request.amount_cents}")
            return ChargeResult(
                order_id=request.order_id,
                status=ChargeStatus.REVIEW_REQUIRED if self.review else ChargeStatus.CAPTURED,
                amount_cents=request.amount_cents,
                reference="ch-1",
            )

        @activity.defn(name="payment.resolve_review")
        async def resolve_review(request: ResolvePaymentReview) -> ChargeResult:
            await self.called(f"payment.resolve_review {request.approved}")
            if not request.approved:
                raise ApplicationError("rejected", type="PaymentDeclined", non_retryable=True)
            return ChargeResult(
                order_id=request.order_id,
                status=ChargeStatus.CAPTURED,
                amount_cents=2000,
                reference="ch-1",
            )

        @activity.defn(name="shipping.create")
        async def ship(request: CreateShipment) -> ShipmentResult:
            await self.called("shipping.create")
            return ShipmentResult(order_id=request.order_id, tracking_number="CM-1")

        @activity.defn(name="inventory.commit")
        async def commit(request: CommitInventory) -> Reservation:
            await self.called("inventory.commit")
            return Reservation(order_id=request.order_id, lines=[], total_cents=2000)

        def undo(name: str) -> object:  # one activity per compensation, all of one shape
            @activity.defn(name=name)
            async def compensate(request: Compensate) -> CompensationResult:
                await self.called(name)
                return CompensationResult(outcome=Undo.UNDONE)

            return compensate

        @activity.defn(name="event_store.append")
        async def append(request: AppendEvents) -> Appended:
            self.events += [event.event_type for event in request.events]
            self.appended += request.events
            return Appended(appended=len(request.events))

        return {
            "customers": [ensure, undo("customers.cancel_user")],
            "inventory": [reserve, commit, undo("inventory.release")],
            "payment": [check_fraud, charge, resolve_review, undo("payment.refund")],
            "shipping": [ship, undo("shipping.cancel")],
            "orders": [append],
        }


def worker(client: Client, services: Services, queues: TaskQueues, service: str) -> Worker:
    saga = service == "orders"
    return Worker(
        client,
        task_queue=queues.for_service(service),
        workflows=[OrderSaga] if saga else [],
        activities=services.activities()[service],
        disable_eager_activity_execution=True,  # see the saga_workers fixture
        # Without a cache, no sticky queue: a saga's next task goes to whichever saga worker
        # polls next, at once, also after this one stopped (the races below restart it).
        max_cached_workflows=0 if saga else 1000,
    )


@asynccontextmanager
async def running(
    client: Client, services: Services, *, saga: bool = True, guest: bool = False
) -> AsyncIterator[OrderSagaInput]:
    """The stand-ins, each on its queue, and the saga's worker unless ``saga`` is False (then
    the test runs it with ``worker(..., "orders")``); yields an order to start: customer
    c-42's, or with ``guest`` a guest checkout's."""
    queues = TaskQueues.with_prefix(f"logic-{uuid.uuid4().hex[:8]}")
    async with AsyncExitStack() as stack:
        for service in services.activities():
            if saga or service != "orders":
                await stack.enter_async_context(worker(client, services, queues, service))
        yield saga_input(
            str(uuid.uuid4()),
            place_order((("SKU-A", 2),), guest=GUEST if guest else None),
            payment_review_timeout=timedelta(hours=24),
            task_queues=queues,
        )


GUEST = Guest(name="Grace Hopper", email="grace@example.com")

FORWARD = [
    "customers.ensure",
    "inventory.reserve",
    "payment.check_fraud",
    "payment.charge 2000",
    "shipping.create",
    "inventory.commit",
]
