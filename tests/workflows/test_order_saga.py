"""OrderSaga in Temporal's time-skipping server, with the real activities on real databases."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment

from cloudmart.contracts.customers import CustomerStatus, Guest, RegisterCustomer
from cloudmart.contracts.orders import CancelOrder, OrderStatus, PaymentReviewDecision
from cloudmart.contracts.saga import CUSTOMER_ID, ORDER_STATUS, workflow_id
from cloudmart.settings import Settings
from services.factory import Services
from tests.support import INITIAL_STOCK, assert_books_balance, new_saga_input, stock
from tests.workflows.saga_helpers import (
    activity_attempts,
    fail_first,
    hold,
    outcome,
    outline,
    start,
    wait_for_status,
)
from workflows.order_saga import OrderSaga

ALL_DONE = "COMPLETED"


async def test_happy_path_reserves_charges_ships_and_commits(
    client: Client, settings: Settings, workers: Services
) -> None:
    saga = new_saga_input(settings, (("SKU-A", 2), ("SKU-B", 1)))
    handle = await start(client, saga)
    state = await outcome(handle)

    assert state.status is OrderStatus.COMPLETED
    assert state.total_cents == 2 * 1000 + 2500
    assert state.failure is None
    assert state.tracking_number and state.tracking_number.startswith("CM")
    assert outline(state.steps) == [
        ("customers.ensure", ALL_DONE),
        ("inventory.reserve", ALL_DONE),
        ("payment.check_fraud", ALL_DONE),
        ("payment.charge", ALL_DONE),
        ("shipping.create", ALL_DONE),
        ("inventory.commit", ALL_DONE),
    ]
    assert state.compensations == []
    assert stock(workers)["SKU-A"] == (98, 0)
    assert_books_balance(workers, [4500])

    description = await handle.describe()
    attributes = description.typed_search_attributes
    assert attributes.get(ORDER_STATUS) == "COMPLETED"
    assert attributes.get(CUSTOMER_ID) == "c-42"
    names = {pair.key.name for pair in attributes}  # no amount: they are stored in clear
    assert names <= {"CustomerId", "OrderStatus", "TemporalChangeVersion"}


@pytest.mark.parametrize(
    ("items", "failure_type"),
    [((("SKU-A", 101),), "OutOfStock"), ((("NO-SUCH-SKU", 1),), "UnknownSku")],
)
async def test_inventory_failure_fails_the_order_without_charging(
    client: Client, settings: Settings, workers: Services, items, failure_type
) -> None:
    state = await outcome(await start(client, new_saga_input(settings, items)))

    assert state.status is OrderStatus.FAILED
    assert state.failure is not None and state.failure.type == failure_type
    assert outline(state.compensations) == [("inventory.release", ALL_DONE)]
    assert "NOTHING_TO_UNDO" in (state.compensations[0].detail or "")
    assert stock(workers) == {sku: (n, 0) for sku, n in INITIAL_STOCK.items()}
    assert_books_balance(workers, [])


async def test_declined_payment_releases_the_inventory(
    client: Client, settings: Settings, workers: Services
) -> None:
    handle = await start(client, new_saga_input(settings, token="tok_decline"))
    with pytest.raises(WorkflowFailureError) as ended:
        await handle.result()
    # The execution ends Failed, with the order's failure: what the Web UI shows in red.
    assert isinstance(ended.value.cause, ApplicationError)
    assert ended.value.cause.type == "PaymentDeclined"
    assert ended.value.cause.non_retryable
    state = await handle.query(OrderSaga.state)

    assert state.status is OrderStatus.FAILED
    assert state.failure is not None and state.failure.type == "PaymentDeclined"
    assert outline(state.compensations) == [
        ("payment.refund", ALL_DONE),
        ("inventory.release", ALL_DONE),
    ]
    assert state.compensations[1].detail == "UNDONE: released 2 unit(s)"
    assert stock(workers)["SKU-A"] == (100, 0)
    assert_books_balance(workers, [])


async def test_an_order_the_fraud_screen_refuses_is_never_charged(
    client: Client, settings: Settings, workers: Services
) -> None:
    state = await outcome(await start(client, new_saga_input(settings, token="tok_fraud")))

    assert state.status is OrderStatus.FAILED
    assert state.failure is not None and state.failure.type == "FraudSuspected"
    assert "card reported stolen" in state.failure.message
    assert outline(state.steps) == [
        ("customers.ensure", ALL_DONE),
        ("inventory.reserve", ALL_DONE),
        ("payment.check_fraud", "FAILED"),
    ]
    # The screen only reads: nothing of payment's to undo, so only the reservation is released.
    assert outline(state.compensations) == [("inventory.release", ALL_DONE)]
    assert workers.payment is not None and workers.payment.totals().charges_by_status == {}
    assert stock(workers)["SKU-A"] == (100, 0)
    assert_books_balance(workers, [])


async def test_shipping_failure_refunds_then_releases(
    client: Client, settings: Settings, workers: Services
) -> None:
    state = await outcome(await start(client, new_saga_input(settings, country="JP")))

    assert state.status is OrderStatus.FAILED
    assert state.failure is not None and state.failure.type == "Undeliverable"
    assert outline(state.compensations) == [
        ("shipping.cancel", ALL_DONE),
        ("payment.refund", ALL_DONE),
        ("inventory.release", ALL_DONE),
    ]
    refund, release = state.compensations[1], state.compensations[2]
    assert refund.detail == "UNDONE: refunded 2000 cents"
    assert refund.at <= release.at
    totals = workers.payment.totals()  # type: ignore[union-attr]
    assert (totals.charged_cents, totals.refunded_cents) == (2000, 2000)
    assert_books_balance(workers, [])


async def test_transient_failures_are_retried_to_success(
    client: Client,
    settings: Settings,
    services: Services,
    saga_workers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reserve_calls = fail_first(monkeypatch, services.inventory, "reserve", times=1)
    async with saga_workers(services):
        handle = await start(client, new_saga_input(settings, token="tok_flaky"))
        state = await outcome(handle)

    assert state.status is OrderStatus.COMPLETED
    assert len(reserve_calls) == 2
    # Three calls: a first attempt of its own (its failure has the saga store the
    # events waiting), then the rest of the retries, whose second succeeds.
    assert await activity_attempts(handle, "payment.charge") == [1, 2]
    assert_books_balance(services, [2000])


async def test_a_compensation_that_fails_twice_is_retried_to_the_end(
    client: Client,
    settings: Settings,
    services: Services,
    saga_workers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refund_calls = fail_first(monkeypatch, services.payment, "refund", times=2)
    async with saga_workers(services):
        handle = await start(client, new_saga_input(settings, country="JP"))
        state = await outcome(handle)

    assert state.status is OrderStatus.FAILED
    assert outline(state.compensations) == [
        ("shipping.cancel", ALL_DONE),
        ("payment.refund", ALL_DONE),
        ("inventory.release", ALL_DONE),
    ]
    assert len(refund_calls) == 3
    assert await activity_attempts(handle, "payment.refund") == [1, 2]  # as the charge above
    assert_books_balance(services, [])


# --- the customers step -------------------------------------------------------------------------


async def test_a_guest_order_that_fails_cancels_the_account_it_opened(
    client: Client, settings: Settings, workers: Services
) -> None:
    guest = Guest(name="Grace Hopper", email=f"grace-{uuid.uuid4().hex[:8]}@example.com")
    saga = new_saga_input(settings, token="tok_decline", guest=guest)
    state = await outcome(await start(client, saga))

    assert state.status is OrderStatus.FAILED
    assert outline(state.steps)[0] == ("customers.ensure", ALL_DONE)
    assert outline(state.compensations) == [
        ("payment.refund", ALL_DONE),
        ("inventory.release", ALL_DONE),
        ("customers.cancel_user", ALL_DONE),  # pushed first, so undone last
    ]
    assert state.compensations[2].detail == f"UNDONE: cancelled account {saga.customer_id}"
    assert workers.customers is not None and workers.event_store is not None
    assert workers.customers.customer(saga.customer_id).status is CustomerStatus.CANCELLED
    timeline = [e.event_type for e in workers.event_store.stream(saga.order_id)]
    assert timeline[:2] == ["OrderPlaced", "CustomerChecked"]
    assert timeline[-2:] == ["GuestAccountCancelled", "OrderFailed"]
    assert_books_balance(workers, [])


async def test_a_closed_account_places_no_order(
    client: Client, settings: Settings, workers: Services
) -> None:
    assert workers.customers is not None
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    customer = workers.customers.register(RegisterCustomer(name="Ada Lovelace", email=email))
    workers.customers.close(customer.customer_id, "moved away", by=customer.customer_id)
    saga = new_saga_input(settings).model_copy(update={"customer_id": customer.customer_id})
    state = await outcome(await start(client, saga))

    assert state.status is OrderStatus.FAILED
    assert state.failure is not None and state.failure.type == "AccountClosed"
    assert outline(state.steps) == [("customers.ensure", "FAILED")]
    assert state.compensations == []  # nothing was done, so nothing to undo
    assert stock(workers) == {sku: (n, 0) for sku, n in INITIAL_STOCK.items()}


# --- payment review ---------------------------------------------------------------------------


async def test_review_approved_completes_the_order(
    client: Client, settings: Settings, workers: Services
) -> None:
    handle = await start(client, new_saga_input(settings, token="tok_review"))
    await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
    accepted = await handle.execute_update(
        OrderSaga.review_payment, PaymentReviewDecision(approved=True)
    )
    assert accepted.status is OrderStatus.AWAITING_PAYMENT_REVIEW
    state = await outcome(handle)

    assert state.status is OrderStatus.COMPLETED
    assert ("payment.review", ALL_DONE) in outline(state.steps)
    assert_books_balance(workers, [2000])


async def test_review_rejected_fails_the_order_and_moves_no_money(
    client: Client, settings: Settings, workers: Services
) -> None:
    handle = await start(client, new_saga_input(settings, token="tok_review"))
    await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
    await handle.execute_update(OrderSaga.review_payment, PaymentReviewDecision(approved=False))
    state = await outcome(handle)

    assert state.status is OrderStatus.FAILED
    assert state.failure is not None and state.failure.type == "PaymentReviewRejected"
    assert workers.payment.totals().charged_cents == 0  # type: ignore[union-attr]
    assert_books_balance(workers, [])


async def test_review_times_out_after_24_hours_of_workflow_time(
    client: Client, settings: Settings, workers: Services, temporal_env: WorkflowEnvironment
) -> None:
    handle = await start(client, new_saga_input(settings, token="tok_review"))
    await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
    await temporal_env.sleep(timedelta(hours=24, seconds=1))  # the test server skips the day
    state = await outcome(handle)

    assert state.status is OrderStatus.FAILED
    assert state.failure is not None
    assert state.failure.type == "PaymentReviewTimedOut"
    assert state.failure.message == "no payment review decision within 24h"
    assert state.updated_at - state.created_at >= timedelta(hours=24)
    assert workers.payment.totals().charges_by_status == {"VOIDED": 1}  # type: ignore[union-attr]
    assert_books_balance(workers, [])


async def test_review_decision_is_refused_unless_awaiting_review(
    client: Client, settings: Settings, workers: Services
) -> None:
    handle = await start(client, new_saga_input(settings, token="tok_review"))
    await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
    await handle.execute_update(OrderSaga.review_payment, PaymentReviewDecision(approved=True))
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(OrderSaga.review_payment, PaymentReviewDecision(approved=False))
    assert str(refused.value.cause) in (  # the first decision stands, whatever the timing
        "AlreadyReviewed: the payment review was already approved",
        "NotAwaitingReview: order is already COMPLETED",
    )
    assert (await handle.result()).status is OrderStatus.COMPLETED


# --- cancellation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "method", "status", "undone"),
    [
        ("inventory", "reserve", OrderStatus.RESERVING_INVENTORY, []),
        ("payment", "charge", OrderStatus.CHARGING_PAYMENT, ["inventory.release"]),
        (
            "shipping",
            "create",
            OrderStatus.CREATING_SHIPMENT,
            ["payment.refund", "inventory.release"],
        ),
    ],
)
async def test_customer_cancel_during_a_step_compensates_and_refuses_the_late_step(
    client: Client,
    settings: Settings,
    services: Services,
    saga_workers,
    monkeypatch: pytest.MonkeyPatch,
    service: str,
    method: str,
    status: OrderStatus,
    undone: list[str],
) -> None:
    gate = hold(monkeypatch, getattr(services, service), method)
    async with saga_workers(services):
        handle = await start(client, new_saga_input(settings))
        await gate.entered()
        accepted = await handle.execute_update(
            OrderSaga.cancel, CancelOrder(reason="changed my mind")
        )
        assert accepted.status is status
        state = await outcome(handle)
        gate.open()  # the held step now runs, late, and must be refused
    # The workers have shut down: the late step has finished.

    assert state.status is OrderStatus.CANCELLED
    assert state.cancel_reason == "changed my mind"
    assert state.failure is None
    assert state.steps[-1].status.value == "CANCELLED"
    undo_details = {c.name: c.detail or "" for c in state.compensations}
    assert all(c.status.value == ALL_DONE for c in state.compensations)
    assert [name for name, detail in undo_details.items() if detail.startswith("UNDONE")] == undone
    assert stock(services)["SKU-A"] == (100, 0)
    assert_books_balance(services, [])
    shipped = services.shipping.engine.connect().exec_driver_sql(  # type: ignore[union-attr]
        "SELECT count(*) FROM shipments WHERE status = 'CREATED'"
    )
    assert shipped.scalar() == 0


async def test_customer_cancel_while_awaiting_review_voids_the_payment(
    client: Client, settings: Settings, workers: Services
) -> None:
    handle = await start(client, new_saga_input(settings, token="tok_review"))
    await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
    await handle.execute_update(OrderSaga.cancel, CancelOrder())
    state = await outcome(handle)

    assert state.status is OrderStatus.CANCELLED
    assert ("payment.review", "CANCELLED") in outline(state.steps)
    assert workers.payment.totals().charges_by_status == {"VOIDED": 1}  # type: ignore[union-attr]
    assert_books_balance(workers, [])


async def test_a_cancelled_orders_compensation_that_fails_once_is_retried_not_stuck(
    client: Client,
    settings: Settings,
    services: Services,
    saga_workers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its first attempt is a round of its own (events waiting); that round failing is
    no reason to give up on a cancelled order's compensation: the rest of its retries follow."""
    release_calls = fail_first(monkeypatch, services.inventory, "release", times=1)
    async with saga_workers(services):
        handle = await start(client, new_saga_input(settings, token="tok_review"))
        await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
        await handle.execute_update(OrderSaga.cancel, CancelOrder())
        state = await outcome(handle)

    assert state.status is OrderStatus.CANCELLED
    assert ("inventory.release", ALL_DONE) in outline(state.compensations)
    assert len(release_calls) == 2
    assert await activity_attempts(handle, "inventory.release") == [1, 1]
    assert "CompensationStuck" not in [
        e.event_type for e in services.event_store.stream(state.order_id)
    ]  # type: ignore[union-attr]
    assert_books_balance(services, [])


async def test_a_repeated_cancel_is_accepted_and_changes_nothing(
    client: Client,
    settings: Settings,
    services: Services,
    saga_workers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = hold(monkeypatch, services.payment, "refund")  # keep it compensating
    async with saga_workers(services):
        handle = await start(client, new_saga_input(settings, token="tok_review"))
        await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
        await handle.execute_update(OrderSaga.cancel, CancelOrder(reason="first"), id="a")
        await gate.entered()
        again = await handle.execute_update(OrderSaga.cancel, CancelOrder(reason="again"), id="b")
        assert again.status is OrderStatus.COMPENSATING
        await handle.cancel()  # and through Temporal, too
        gate.open()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        state = await handle.query(OrderSaga.state)
    assert state.status is OrderStatus.CANCELLED
    assert state.cancel_reason == "first"
    assert [c.name for c in state.compensations] == ["payment.refund", "inventory.release"]


async def test_cancel_is_refused_while_a_failed_order_is_compensated(
    client: Client,
    settings: Settings,
    services: Services,
    saga_workers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = hold(monkeypatch, services.payment, "refund")
    async with saga_workers(services):
        handle = await start(client, new_saga_input(settings, country="JP"))
        await gate.entered()
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(OrderSaga.cancel, CancelOrder())
        gate.open()
        state = await outcome(handle)
    assert "order failed and is being compensated" in str(refused.value.cause)
    assert state.status is OrderStatus.FAILED


async def test_cancel_is_refused_once_the_shipment_exists(
    client: Client,
    settings: Settings,
    services: Services,
    saga_workers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = hold(monkeypatch, services.inventory, "commit")
    async with saga_workers(services):
        handle = await start(client, new_saga_input(settings))
        await gate.entered()
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(OrderSaga.cancel, CancelOrder())
        gate.open()
        state = await outcome(handle)

    assert "already created; too late to cancel" in str(refused.value.cause)
    assert state.status is OrderStatus.COMPLETED
    assert_books_balance(services, [2000])


async def test_cancel_from_temporal_compensates_and_ends_cancelled(
    client: Client, settings: Settings, workers: Services
) -> None:
    handle = await start(client, new_saga_input(settings, token="tok_review"))
    await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
    await handle.cancel()  # what the Web UI's and `temporal workflow cancel`'s button does
    with pytest.raises(WorkflowFailureError) as ended:
        await handle.result()
    assert isinstance(ended.value.cause, CancelledError)

    description = await handle.describe()
    assert description.status is WorkflowExecutionStatus.CANCELED
    assert description.typed_search_attributes.get(ORDER_STATUS) == "CANCELLED"
    state = await handle.query(OrderSaga.state)
    assert state.status is OrderStatus.CANCELLED
    assert state.cancel_reason == "cancel requested through Temporal"
    assert outline(state.compensations) == [
        ("payment.refund", ALL_DONE),
        ("inventory.release", ALL_DONE),
    ]
    assert_books_balance(workers, [])


async def test_cancel_from_temporal_during_a_step_refuses_the_late_step(
    client: Client,
    settings: Settings,
    services: Services,
    saga_workers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = hold(monkeypatch, services.shipping, "create")
    async with saga_workers(services):
        handle = await start(client, new_saga_input(settings))
        await gate.entered()
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        state = await handle.query(OrderSaga.state)
        gate.open()  # the held shipment now runs, late, and must be refused

    assert state.status is OrderStatus.CANCELLED
    assert outline(state.compensations) == [
        ("shipping.cancel", ALL_DONE),
        ("payment.refund", ALL_DONE),
        ("inventory.release", ALL_DONE),
    ]
    assert stock(services)["SKU-A"] == (100, 0)
    assert_books_balance(services, [])
    shipped = services.shipping.engine.connect().exec_driver_sql(  # type: ignore[union-attr]
        "SELECT status FROM shipments"
    )
    assert [row[0] for row in shipped] == ["TOMBSTONE"]


async def test_cancel_from_temporal_after_the_shipment_lets_the_order_complete(
    client: Client,
    settings: Settings,
    services: Services,
    saga_workers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = hold(monkeypatch, services.inventory, "commit")
    async with saga_workers(services):
        handle = await start(client, new_saga_input(settings))
        await gate.entered()
        await handle.cancel()
        gate.open()
        state = await outcome(handle)

    assert state.status is OrderStatus.COMPLETED
    assert (await handle.describe()).status is WorkflowExecutionStatus.COMPLETED
    assert_books_balance(services, [2000])


async def test_cancel_before_the_first_step_ends_cancelled_with_nothing_to_undo(
    client: Client, settings: Settings, workers: Services
) -> None:
    saga = new_saga_input(settings)
    start = WithStartWorkflowOperation(
        OrderSaga.run,
        saga,
        id=workflow_id(saga.order_id),
        task_queue=saga.task_queues.orders,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
    )
    # The cancel arrives with the start, in the saga's very first workflow task.
    accepted = await client.execute_update_with_start_workflow(
        OrderSaga.cancel, CancelOrder(reason="clicked twice"), start_workflow_operation=start
    )
    assert accepted.status is OrderStatus.PENDING
    state = await (await start.workflow_handle()).result()

    assert state.status is OrderStatus.CANCELLED
    assert state.steps == [] and state.compensations == []
    assert stock(workers)["SKU-A"] == (100, 0)
