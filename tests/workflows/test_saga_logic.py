"""The saga's logic alone: its services replaced by activities of the same names, in the style of
temporalio/samples-python's tests (``@activity.defn(name=...)``). Which steps run, in which
order, with what, and which compensations when one fails or the order is cancelled; no
database, in milliseconds. The real services run under the saga in test_order_saga.py."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import Client, WorkflowFailureError

from cloudmart.contracts.orders import (
    CancelOrder,
    CancelUpdate,
    OrderStatus,
    ResolveCompensationUpdate,
    ReviewPaymentUpdate,
)
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
        ("customers.ensure", []),  # a named customer's account is only read: nothing to undo
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


# --- the customers step (the lecture's User Service) --------------------------------------------


async def test_the_customers_step_comes_first_and_is_recorded(client: Client) -> None:
    services = Services()
    async with running(client, services) as order:
        state = await outcome(await start(client, order))
    assert state.status is OrderStatus.COMPLETED
    assert services.calls[0] == "customers.ensure" and state.steps[0].name == "customers.ensure"
    assert services.events[:3] == ["OrderPlaced", "CustomerChecked", "InventoryReserved"]
    checked = services.appended[1]
    assert checked.data == {"customer_id": "c-42", "registered": True, "created": False}
    assert checked.user_id == "system"


async def test_a_guest_checkout_opens_an_account_and_completes(client: Client) -> None:
    services = Services()
    async with running(client, services, guest=True) as order:
        state = await outcome(await start(client, order))
    assert state.status is OrderStatus.COMPLETED
    assert services.calls == FORWARD  # no Cancel User: the order went through
    checked = services.appended[1]
    assert checked.event_type == "CustomerChecked"
    assert checked.data == {"customer_id": order.customer_id, "registered": True, "created": True}
    assert order.customer_id.startswith("guest-")
    # The guest's name and e-mail are in no order event (they are personal data).
    assert not any("grace" in str(event.data).lower() for event in services.appended)


async def test_a_guest_order_that_fails_cancels_the_user_last(client: Client) -> None:
    services = Services(fail="payment.charge 2000", fail_type="PaymentDeclined")
    async with running(client, services, guest=True) as order:
        state = await outcome(await start(client, order))
    assert state.status is OrderStatus.FAILED
    assert state.failure is not None and state.failure.type == "PaymentDeclined"
    ran = FORWARD[: FORWARD.index("payment.charge 2000") + 1]
    # In reverse: the user was created first, so Cancel User runs last.
    assert services.calls == [*ran, "payment.refund", "inventory.release", "customers.cancel_user"]
    assert [c.name for c in state.compensations][-1] == "customers.cancel_user"
    assert services.events[-3:] == ["InventoryReleased", "GuestAccountCancelled", "OrderFailed"]
    cancelled = services.appended[-2]
    assert cancelled.data["customer_id"] == order.customer_id
    assert cancelled.data["outcome"] == "UNDONE"


async def test_a_closed_account_fails_the_order_before_anything_else(client: Client) -> None:
    services = Services(fail="customers.ensure", fail_type="AccountClosed")
    async with running(client, services) as order:
        handle = await start(client, order)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        state = await outcome(handle)
    assert state.status is OrderStatus.FAILED
    assert state.failure is not None and state.failure.type == "AccountClosed"
    assert services.calls == ["customers.ensure"]  # nothing reserved, charged or undone
    assert services.events == [
        "OrderPlaced",
        "CustomerCheckFailed",
        "CompensationStarted",
        "OrderFailed",
    ]
    assert services.appended[1].data["type"] == "AccountClosed"


# --- who acted ----------------------------------------------------------------------------------


async def test_the_events_name_who_decided(client: Client) -> None:
    """The API fills ``by`` from the caller's token; the events record that name."""
    services = Services(review=True)
    async with running(client, services) as order:
        handle = await start(client, order)
        await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
        await handle.execute_update(
            OrderSaga.review_payment, ReviewPaymentUpdate(approved=True, by="alice")
        )
        assert (await outcome(handle)).status is OrderStatus.COMPLETED
    reviewed = next(e for e in services.appended if e.event_type == "PaymentReviewed")
    assert reviewed.user_id == "alice"

    services = Services(review=True)
    async with running(client, services) as order:
        handle = await start(client, order)
        await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
        await handle.execute_update(OrderSaga.cancel, CancelUpdate(reason="fraud", by="bob"))
        assert (await outcome(handle)).status is OrderStatus.CANCELLED
    assert services.appended[-1].event_type == "OrderCancelled"
    assert services.appended[-1].user_id == "bob"

    services = Services(review=True, fail="inventory.release")  # refused for good: stuck
    async with running(client, services) as order:
        handle = await start(client, order)
        await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
        await handle.execute_update(OrderSaga.cancel, CancelOrder())
        await wait_for_status(handle, OrderStatus.COMPENSATION_STUCK)
        resolution = ResolveCompensationUpdate(
            step="inventory.release", note="released by hand", by="carol"
        )
        await handle.execute_update(OrderSaga.resolve_compensation, resolution)
        assert (await outcome(handle)).status is OrderStatus.CANCELLED
    resolved = next(e for e in services.appended if e.event_type == "CompensationResolved")
    assert resolved.user_id == "carol"


async def test_without_a_name_the_events_say_operator_and_customer(client: Client) -> None:
    """Update arguments as sent before ``by`` existed: the decision decodes, and the events
    record ``operator`` for the review and the customer for a cancel, as they always did."""
    services = Services(review=True)
    async with running(client, services) as order:
        handle = await start(client, order)
        await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
        await handle.execute_update(OrderSaga.review_payment, ReviewPaymentUpdate(approved=True))
        await outcome(handle)
    reviewed = next(e for e in services.appended if e.event_type == "PaymentReviewed")
    assert reviewed.user_id == "operator"

    services = Services(review=True)
    async with running(client, services) as order:
        handle = await start(client, order)
        await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
        await handle.execute_update(OrderSaga.cancel, CancelOrder())  # a body, no by at all
        await outcome(handle)
    assert services.appended[-1].user_id == "c-42"
