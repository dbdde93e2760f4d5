"""The activities as Temporal runs them: idempotent, tombstoned, and typed on failure."""

from __future__ import annotations

import typing

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.customers import CustomersActivities
from activities.event_store import EventStoreActivities
from activities.inventory import InventoryActivities
from activities.payment import PaymentActivities
from activities.shipping import ShippingActivities
from cloudmart.contracts.activities import ALL_ACTIVITIES
from cloudmart.contracts.orders import OrderItem
from cloudmart.contracts.steps import (
    ChargePayment,
    CommitInventory,
    Compensate,
    CreateShipment,
    ReserveInventory,
    Undo,
)
from services.factory import Services
from services.payment.provider import ProviderUnavailable
from tests.support import address, stock

ORDER = "6a1c2f0e-0000-4000-8000-000000000001"


@pytest.fixture
def run() -> typing.Callable[..., typing.Any]:
    return ActivityEnvironment().run


@pytest.fixture
def orders(services: Services) -> EventStoreActivities:
    assert services.event_store is not None
    return EventStoreActivities(services.event_store)


@pytest.fixture
def customers(services: Services) -> CustomersActivities:
    assert services.customers is not None
    return CustomersActivities(services.customers)


@pytest.fixture
def inventory(services: Services) -> InventoryActivities:
    assert services.inventory is not None
    return InventoryActivities(services.inventory)


@pytest.fixture
def payment(services: Services) -> PaymentActivities:
    assert services.payment is not None
    return PaymentActivities(services.payment)


@pytest.fixture
def shipping(services: Services) -> ShippingActivities:
    assert services.shipping is not None
    return ShippingActivities(services.shipping)


def reserve(quantity: int = 3, sku: str = "SKU-A") -> ReserveInventory:
    return ReserveInventory(order_id=ORDER, items=[OrderItem(sku=sku, quantity=quantity)])


def charge(token: str = "tok_ok", amount: int = 3000) -> ChargePayment:
    return ChargePayment(
        order_id=ORDER, customer_id="c-1", payment_token=token, amount_cents=amount
    )


UNDO = Compensate(order_id=ORDER, reason="test")


def test_every_named_activity_is_implemented_with_its_contract_types(
    orders: EventStoreActivities,
    customers: CustomersActivities,
    inventory: InventoryActivities,
    payment: PaymentActivities,
    shipping: ShippingActivities,
) -> None:
    implemented = {}
    for fn in [*orders.all(), *customers.all(), *inventory.all(), *payment.all(), *shipping.all()]:
        definition = activity._Definition.must_from_callable(fn)  # type: ignore[arg-type]
        implemented[definition.name] = (definition.arg_types, definition.ret_type)
    assert implemented == {
        spec.name: ([spec.arg_type], spec.result_type) for spec in ALL_ACTIVITIES
    }


# --- each forward step and each compensation, called twice, has one effect -------------------


def test_reserve_twice_reserves_once(run, inventory, services) -> None:
    first = run(inventory.reserve, reserve(3))
    assert run(inventory.reserve, reserve(3)) == first
    assert stock(services)["SKU-A"] == (97, 3)


def test_release_twice_releases_once(run, inventory, services) -> None:
    run(inventory.reserve, reserve(3))
    assert run(inventory.release, UNDO).outcome is Undo.UNDONE
    assert run(inventory.release, UNDO).outcome is Undo.ALREADY_UNDONE
    assert stock(services)["SKU-A"] == (100, 0)


def test_commit_twice_sells_once(run, inventory, services) -> None:
    run(inventory.reserve, reserve(3))
    commit = CommitInventory(order_id=ORDER)
    assert run(inventory.commit, commit) == run(inventory.commit, commit)
    assert stock(services)["SKU-A"] == (97, 0)


def test_charge_twice_charges_once(run, payment, services) -> None:
    assert run(payment.charge, charge()) == run(payment.charge, charge())
    assert services.payment.totals().charged_cents == 3000


def test_refund_twice_refunds_once(run, payment, services) -> None:
    run(payment.charge, charge())
    assert run(payment.refund, UNDO).outcome is Undo.UNDONE
    assert run(payment.refund, UNDO).outcome is Undo.ALREADY_UNDONE
    totals = services.payment.totals()
    assert (totals.charged_cents, totals.refunded_cents) == (3000, 3000)


def test_create_shipment_twice_ships_once(run, shipping) -> None:
    request = CreateShipment(order_id=ORDER, address=address("NL"))
    first = run(shipping.create, request)
    assert first.tracking_number.startswith("CM")
    assert run(shipping.create, request) == first


def test_cancel_shipment_twice_cancels_once(run, shipping) -> None:
    run(shipping.create, CreateShipment(order_id=ORDER, address=address()))
    assert run(shipping.cancel, UNDO).outcome is Undo.UNDONE
    assert run(shipping.cancel, UNDO).outcome is Undo.ALREADY_UNDONE


# --- a compensation before its step is a no-op, and refuses the step afterwards ---------------


def assert_refused(err: pytest.ExceptionInfo[ApplicationError]) -> None:
    assert err.value.type == "AlreadyCompensated"
    assert err.value.non_retryable


def test_release_before_reserve_refuses_the_late_reservation(run, inventory, services) -> None:
    before = stock(services)
    assert run(inventory.release, UNDO).outcome is Undo.NOTHING_TO_UNDO
    assert run(inventory.release, UNDO).outcome is Undo.NOTHING_TO_UNDO
    with pytest.raises(ApplicationError) as refused:
        run(inventory.reserve, reserve(3))
    assert_refused(refused)
    assert stock(services) == before


def test_refund_before_charge_refuses_the_late_charge(run, payment, services) -> None:
    assert run(payment.refund, UNDO).outcome is Undo.NOTHING_TO_UNDO
    with pytest.raises(ApplicationError) as refused:
        run(payment.charge, charge())
    assert_refused(refused)
    assert services.payment.totals().charged_cents == 0


def test_cancel_before_shipment_refuses_the_late_shipment(run, shipping) -> None:
    assert run(shipping.cancel, UNDO).outcome is Undo.NOTHING_TO_UNDO
    with pytest.raises(ApplicationError) as refused:
        run(shipping.create, CreateShipment(order_id=ORDER, address=address()))
    assert_refused(refused)


# --- business failures are typed and final; everything else is retried ------------------------


@pytest.mark.parametrize(
    ("call", "failure_type"),
    [
        (lambda a: a["inventory"].reserve(reserve(101)), "OutOfStock"),
        (lambda a: a["inventory"].reserve(reserve(1, sku="NO-SUCH-SKU")), "UnknownSku"),
        (lambda a: a["payment"].charge(charge("tok_decline")), "PaymentDeclined"),
        (lambda a: a["payment"].charge(charge("tok_nonsense")), "PaymentDeclined"),
        (
            lambda a: a["shipping"].create(CreateShipment(order_id=ORDER, address=address("JP"))),
            "Undeliverable",
        ),
    ],
)
def test_business_failures_are_non_retryable_and_typed(
    run, inventory, payment, shipping, call, failure_type
) -> None:
    acts = {"inventory": inventory, "payment": payment, "shipping": shipping}
    with pytest.raises(ApplicationError) as failure:
        run(call, acts)
    assert failure.value.type == failure_type
    assert failure.value.non_retryable


def test_a_provider_outage_stays_retryable(run, payment, services) -> None:
    for attempt in (1, 2):
        with pytest.raises(ApplicationError) as outage:
            run(payment.charge, charge("tok_flaky"))
        assert outage.value.type == ProviderUnavailable.__name__
        assert not outage.value.non_retryable
        # Our own exception: its message (ours, no order data) crosses as it is.
        assert outage.value.message == f"payment provider timed out (attempt {attempt})"
    assert run(payment.charge, charge("tok_flaky")).status == "CAPTURED"
    assert services.payment.totals().charged_cents == 3000
