"""A database write that fails, at every step of the saga and in every compensation, leaks no
payment token, customer name or address: not into Temporal's history (decrypted: failure
messages are encrypted too, but whoever holds the keys, the operator in the Web UI included,
reads them), not into what ``describe`` shows of a pending activity, and not into the worker's
log.

The real stack (dev server, worker and API processes) on SQLite files; the sagas are started as
the API starts them, with order ids chosen beforehand. Each failure comes from
a trigger that refuses one order's write, as a broken or full database would: SQLAlchemy's error
for it quotes the statement and, unless hidden, its parameters (the token, the address).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf.message import Message
from sqlalchemy import make_url
from temporalio.api.failure.v1 import Failure
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter

from cloudmart.contracts.orders import (
    OrderItem,
    OrderStatus,
    PaymentReviewDecision,
    PlaceOrder,
    ShippingAddress,
)
from cloudmart.contracts.saga import start_search_attributes, workflow_id
from cloudmart.settings import Settings
from cloudmart.temporal import connect
from devstack.stack import DevStack, settings_env, throwaway_settings
from tests.workflows.saga_helpers import outcome, wait_for_status
from workflows.order_saga import OrderSaga

REFUSED = "refused by test_failure_leaks"
"""The trigger's own message: the database error the activity meets."""


@dataclass(frozen=True)
class Refusal:
    """A trigger that refuses one order's write to ``table``: ``activity`` fails until it is
    dropped."""

    activity: str
    database: str
    table: str
    operation: str  # INSERT or UPDATE
    status: str | None = None
    """Only writes that set this status (the table's other writes for the order go through)."""
    key: str = "order_id"
    failure: str = "IntegrityError"
    """The failure's type in Temporal."""


@dataclass(frozen=True)
class Scenario:
    refusals: tuple[Refusal, ...]
    token: str = "tok_ok"
    country: str = "DE"
    ends: OrderStatus = OrderStatus.COMPLETED


SCENARIOS = {
    "reserve": Scenario((Refusal("inventory.reserve", "inventory", "reservations", "INSERT"),)),
    "fraud screen": Scenario(
        (Refusal("payment.check_fraud", "payment", "fraud_checks", "INSERT"),)
    ),
    "charge": Scenario((Refusal("payment.charge", "payment", "charges", "INSERT"),)),
    "review resolution": Scenario(
        (Refusal("payment.resolve_review", "payment", "charges", "UPDATE", "CAPTURE_PENDING"),),
        token="tok_review",
    ),
    "shipment": Scenario((Refusal("shipping.create", "shipping", "shipments", "INSERT"),)),
    "commit": Scenario(
        (Refusal("inventory.commit", "inventory", "reservations", "UPDATE", "COMMITTED"),)
    ),
    "event append": Scenario(
        # The store takes any refused insert for a taken sequence number.
        (
            Refusal(
                *("event_store.append", "event_store", "events", "INSERT"),
                key="aggregate_id",
                failure="ConcurrencyConflict",
            ),
        )
    ),
    # Japan is undeliverable: every compensation runs, in reverse, each refused in turn.
    "compensations": Scenario(
        (
            Refusal("shipping.cancel", "shipping", "shipments", "INSERT", "TOMBSTONE"),
            Refusal("payment.refund", "payment", "charges", "UPDATE", "REFUND_PENDING"),
            Refusal("inventory.release", "inventory", "reservations", "UPDATE", "RELEASED"),
        ),
        country="JP",
        ends=OrderStatus.FAILED,
    ),
}


@dataclass
class Order:
    scenario: str
    order_id: str
    name: str
    line1: str
    token: str

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.token, self.name, self.line1)


def database_file(settings: Settings, database: str) -> Path:
    path = make_url(settings.db_url(database)).database
    assert path is not None
    return Path(path)


def sql(settings: Settings, database: str, statement: str) -> None:
    with sqlite3.connect(database_file(settings, database), timeout=30) as connection:
        connection.execute(statement)


def trigger_name(order: Order, refusal: Refusal) -> str:
    return f"refuse_{order.order_id.replace('-', '')}_{refusal.activity.replace('.', '_')}"


def refuse(settings: Settings, order: Order, refusal: Refusal) -> None:
    condition = f"NEW.{refusal.key} = '{order.order_id}'"
    if refusal.status is not None:
        condition += f" AND NEW.status = '{refusal.status}'"
    sql(
        settings,
        refusal.database,
        f"CREATE TRIGGER {trigger_name(order, refusal)} BEFORE {refusal.operation} "
        f"ON {refusal.table} WHEN {condition} BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END",
    )


def failures_in(message: Message) -> Iterator[Failure]:
    """Every Failure anywhere in ``message`` (its causes included)."""
    if isinstance(message, Failure):
        yield message
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            items = [v for v in value.values() if isinstance(v, Message)]
        elif field.is_repeated:
            items = list(value)
        else:
            items = [value]
        for item in items:
            yield from failures_in(item)


async def readable(message: Message, client: Client) -> bytes:
    """What anyone reading ``message`` can see, plus its failures' attributes as the keys
    decrypt them (should failure attributes be encoded, a leak must still be caught)."""
    codec = client.data_converter.payload_codec
    assert codec is not None
    seen = [message.SerializeToString()]
    for failure in failures_in(message):
        if failure.HasField("encoded_attributes"):
            [decoded] = await codec.decode([failure.encoded_attributes])
            seen.append(decoded.data)
    return b"\n".join(seen)


async def wait_until_failed(client: Client, order: Order, refusal: Refusal) -> bytes:
    """Once the refused activity has failed and is being retried: what describe shows then."""
    handle = client.get_workflow_handle(workflow_id(order.order_id))
    deadline = time.monotonic() + 60
    while True:
        described = (await handle.describe()).raw_description
        for pending in described.pending_activities:
            failure = pending.last_failure
            if pending.activity_type.name == refusal.activity and failure.message:
                assert pending.attempt >= 2
                assert failure.application_failure_info.type == refusal.failure, failure
                return await readable(described, client)
        assert time.monotonic() < deadline, f"{order.scenario}: {refusal.activity} never failed"
        await asyncio.sleep(0.1)


async def run(scenario: str, settings: Settings, client: Client) -> tuple[Order, list[bytes]]:
    """Start the scenario's order with its refusals in place (started as the API starts it, with
    an order id known beforehand); drop each refusal once its activity has failed. Returns the
    order and what describe showed of each failure."""
    plan = SCENARIOS[scenario]
    marker = uuid.uuid4().hex[:10]
    order = Order(
        scenario=scenario,
        order_id=str(uuid.uuid4()),
        name=f"Ada Geheim{marker}",
        line1=f"Verborgenweg {marker}",
        token=plan.token,
    )
    for refusal in plan.refusals:
        await asyncio.to_thread(refuse, settings, order, refusal)
    placed = PlaceOrder(
        customer_id=f"c-{marker}",
        items=[OrderItem(sku="MOUSE-ERGO-01", quantity=1)],
        payment_token=order.token,
        shipping_address=ShippingAddress(
            name=order.name,
            line1=order.line1,
            city="Berlin",
            postal_code="10115",
            country=plan.country,
        ),
    )
    handle = await client.start_workflow(
        OrderSaga.run,
        settings.saga_input(order.order_id, placed),
        id=workflow_id(order.order_id),
        task_queue=settings.task_queues.orders,
        search_attributes=start_search_attributes(placed.customer_id),
    )
    described = []
    for refusal in plan.refusals:
        if refusal.activity == "payment.resolve_review":
            await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW, attempts=600)
            await handle.execute_update(
                OrderSaga.review_payment, PaymentReviewDecision(approved=True)
            )
        described.append(await wait_until_failed(client, order, refusal))
        await asyncio.to_thread(
            sql, settings, refusal.database, f"DROP TRIGGER {trigger_name(order, refusal)}"
        )
    assert (await outcome(handle)).status == plan.ends
    return order, described


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    data_dir = tmp_path_factory.mktemp("leaks")
    settings = throwaway_settings(
        data_dir, task_queue_prefix=f"leak-{uuid.uuid4().hex[:8]}", activity_threads=4
    )
    with (data_dir / "stack.log").open("w") as output:
        stack = DevStack(settings, settings_env(settings), output=output, persist=False)
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()


async def test_a_failing_database_write_at_any_step_leaks_no_token_name_or_address(
    stack: DevStack,
) -> None:
    settings = stack.settings
    client = await connect(settings)
    runs = await asyncio.gather(*(run(scenario, settings, client) for scenario in SCENARIOS))

    # The history as anyone with access to Temporal reads it: no codec.
    plain = Client(
        client.service_client, namespace=client.namespace, data_converter=pydantic_data_converter
    )
    for order, described in runs:
        handle = plain.get_workflow_handle(workflow_id(order.order_id))
        assert (await handle.describe()).status in (
            WorkflowExecutionStatus.COMPLETED,
            WorkflowExecutionStatus.FAILED,
        )
        history = await handle.fetch_history()
        seen = [await readable(event, client) for event in history.events]
        # Not vacuous: each refused write is in the history as a database error.
        failed = {f.application_failure_info.type for e in history.events for f in failures_in(e)}
        assert {r.failure for r in SCENARIOS[order.scenario].refusals} <= failed, order.scenario
        for text in [*seen, *described]:
            for secret in order.secrets:
                assert secret.encode() not in text, f"{order.scenario}: {secret} in Temporal"

    statuses = stack.stop()
    assert set(statuses.values()) == {0}, statuses
    log = (settings.data_dir / "stack.log").read_text()
    assert "Completing activity as failed" in log  # the SDK logged the failures: not vacuous
    for path in [settings.data_dir / "stack.log", *(settings.data_dir / "logs").iterdir()]:
        content = path.read_text()
        for order, _ in runs:
            for secret in order.secrets:
                assert secret not in content, f"{order.scenario}: {secret} in {path.name}"
