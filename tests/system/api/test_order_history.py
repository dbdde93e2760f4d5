"""An order's past over HTTP, against the real stack: its state folded from the event store as
of a time or a sequence number, and its current state from the same fold while the saga cannot
be asked (Temporal down)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from cloudmart.contracts.events import CURRENT_VERSION, Event, EventType, event_id
from cloudmart.contracts.saga import CUSTOMER_ID, workflow_id
from cloudmart.settings import Settings
from devstack.processes import free_port
from devstack.stack import DevStack
from services.database import create_db_engine
from services.event_store.store import EventStore
from tests.support import api_process, operator_headers
from tests.system.api.test_api import UNKNOWN, order_body, place, wait_for
from tests.system.api.test_auth import bearer, customer_token

ALICE = f"alice-{uuid.uuid4().hex[:8]}"
BOB = f"bob-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def api(dev_stack: DevStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dev_stack.api_url, timeout=15) as client:
        yield client


@pytest.fixture(scope="module")
def reviewed(api: httpx.Client, as_operator: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
    """An order held for a payment review, approved, completed; and its stored events."""
    order_id = place(api, order_body(customer=ALICE, token="tok_review"))
    wait_for(api, order_id, {"AWAITING_PAYMENT_REVIEW"})
    approved = api.post(
        f"/orders/{order_id}/payment-review", json={"approved": True}, headers=as_operator
    )
    assert approved.status_code == 202, approved.text
    assert wait_for(api, order_id)["status"] == "COMPLETED"
    events = api.get(f"/orders/{order_id}/events").json()
    assert events[-1]["event_type"] == "OrderCompleted"  # whole: stored before the saga ended
    return order_id, events


def state_as_of(api: httpx.Client, order_id: str, as_of: object = None) -> dict[str, Any]:
    params = {} if as_of is None else {"as_of": str(as_of)}
    response = api.get(f"/orders/{order_id}/state", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_an_order_reads_as_it_stood_at_its_review_and_at_its_end(api, reviewed) -> None:
    order_id, events = reviewed
    review = next(e for e in events if e["event_type"] == "PaymentReviewRequested")
    held = state_as_of(api, order_id, review["occurred_at"])
    assert (held["source"], held["sequence"], held["occurred_at"]) == (
        "event_store",
        review["sequence"],
        review["occurred_at"],
    )
    assert held["state"]["status"] == "AWAITING_PAYMENT_REVIEW"
    assert held["state"]["tracking_number"] is None

    final = state_as_of(api, order_id)
    live = api.get(f"/orders/{order_id}").json()
    assert (final["sequence"], final["as_of"]) == (events[-1]["sequence"], None)
    assert final["state"]["status"] == live["status"] == "COMPLETED"
    assert (final["state"]["customer_id"], final["state"]["total_cents"]) == (
        live["customer_id"],
        live["total_cents"],
    )
    assert final["state"]["tracking_number"] == live["tracking_number"] is not None


def test_an_order_reads_as_of_a_sequence_number_and_a_time_in_any_zone(api, reviewed) -> None:
    order_id, events = reviewed
    review = next(e for e in events if e["event_type"] == "PaymentReviewRequested")
    by_number = state_as_of(api, order_id, review["sequence"])
    assert (by_number["state"]["status"], by_number["as_of"]) == (
        "AWAITING_PAYMENT_REVIEW",
        review["sequence"],
    )
    before = state_as_of(api, order_id, review["sequence"] - 1)
    assert before["state"]["status"] == "CHARGING_PAYMENT"
    # The same instant two hours east: a '+' that reaches the server (httpx encodes it).
    east = datetime.fromisoformat(review["occurred_at"]).astimezone(timezone(timedelta(hours=2)))
    assert state_as_of(api, order_id, east.isoformat())["sequence"] == review["sequence"]


@pytest.mark.parametrize("as_of", [0, "placed - 1 h"])
def test_before_the_order_was_placed_it_has_no_state(api, reviewed, as_of) -> None:
    order_id, events = reviewed
    if as_of == "placed - 1 h":
        as_of = (datetime.fromisoformat(events[0]["occurred_at"]) - timedelta(hours=1)).isoformat()
    before = state_as_of(api, order_id, as_of)
    assert (before["state"], before["sequence"], before["occurred_at"]) == (None, 0, None)


@pytest.mark.parametrize(
    "as_of",
    ["-1", "1.5", "1e3", "", "yesterday", "2026-01-31T12:00:00", "2026-01-31", "+5", "٣", "9" * 65],
)
def test_a_bad_as_of_is_422_naming_it(api, reviewed, as_of: str) -> None:
    order_id, _ = reviewed
    response = api.get(f"/orders/{order_id}/state", params={"as_of": as_of})
    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["detail"]] == [["query", "as_of"]]


def test_an_unknown_orders_state_is_404(api) -> None:
    response = api.get(f"/orders/{UNKNOWN}/state")
    assert response.status_code == 404
    assert response.json() == {"detail": f"order {UNKNOWN} not found"}


# --- with customer tokens ---------------------------------------------------------------------


def as_customer(settings: Settings, customer_id: str) -> dict[str, str]:
    return bearer(customer_token(settings, customer_id))


def test_another_customers_past_is_404_exactly_like_an_unknown_order(
    anonymous: httpx.Client, auth_settings: Settings, reviewed
) -> None:
    order_id, _ = reviewed
    path = f"/orders/{order_id}/state"
    mine = anonymous.get(path, params={"as_of": 1}, headers=as_customer(auth_settings, ALICE))
    assert mine.status_code == 200 and mine.json()["state"]["customer_id"] == ALICE
    bobs = as_customer(auth_settings, BOB)
    theirs = anonymous.get(path, params={"as_of": 1}, headers=bobs)
    unknown = anonymous.get(f"/orders/{UNKNOWN}/state", params={"as_of": 1}, headers=bobs)
    assert (theirs.status_code, unknown.status_code) == (404, 404)
    assert theirs.json() == {"detail": f"order {order_id} not found"}
    assert unknown.json() == {"detail": f"order {UNKNOWN} not found"}
    assert set(theirs.headers) == set(unknown.headers)


# --- Temporal down ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def temporal_down(auth_settings: Settings) -> Iterator[tuple[httpx.Client, Settings]]:
    """A second API over the dev stack's databases, tokens required, whose Temporal is a port
    nothing listens on: the saga cannot be asked, the event store can."""
    settings = auth_settings.model_copy(
        update={"api_port": free_port(), "temporal_address": f"127.0.0.1:{free_port()}"}
    )
    with api_process(settings) as client:
        yield client, settings


@pytest.mark.parametrize("params", [{}, {"wait": 5}])
def test_while_temporal_is_down_an_order_is_read_from_the_fold_of_its_events(
    api, reviewed, temporal_down, params
) -> None:
    order_id, events = reviewed
    down, settings = temporal_down
    live = api.get(f"/orders/{order_id}").json()
    assert (live["source"], live["as_of_sequence"]) == ("saga", None)

    for headers in (operator_headers(settings), as_customer(settings, ALICE)):
        response = down.get(f"/orders/{order_id}", params=params, headers=headers)
        assert response.status_code == 200, response.text
        folded = response.json()
        assert (folded["source"], folded["as_of_sequence"]) == (
            "event_store",
            events[-1]["sequence"],
        )
        assert (folded["steps"], folded["compensations"], folded["stuck"]) == ([], [], None)
        # Everything else is what the saga says: the same fields, the same values.
        assert set(folded) == set(live)
        same = {"order_id", "customer_id", "status", "items", "total_cents", "tracking_number"}
        assert {k: folded[k] for k in same} == {k: live[k] for k in same}
        assert folded["failure"] == folded["cancel_reason"] == live["failure"] is None


def test_while_temporal_is_down_an_order_with_nothing_stored_is_still_503(temporal_down) -> None:
    """Today's answer, kept: the fold has nothing to say about it."""
    down, settings = temporal_down
    unknown = down.get(f"/orders/{UNKNOWN}", headers=operator_headers(settings))
    assert unknown.status_code == 503
    assert unknown.json()["detail"].startswith("Temporal is unreachable at")


def test_while_temporal_is_down_another_customers_order_is_503_like_an_unknown_one(
    reviewed, temporal_down
) -> None:
    order_id, _ = reviewed
    down, settings = temporal_down
    bobs = as_customer(settings, BOB)
    theirs = down.get(f"/orders/{order_id}", headers=bobs)
    unknown = down.get(f"/orders/{UNKNOWN}", headers=bobs)
    assert (theirs.status_code, unknown.status_code) == (503, 503)
    assert theirs.json() == unknown.json()
    assert set(theirs.headers) == set(unknown.headers)


async def test_while_no_worker_answers_an_order_is_read_from_the_fold_of_its_events(
    api: httpx.Client, dev_stack: DevStack
) -> None:
    """Temporal is up, but no worker polls the saga's queue (here, never; in life, every worker
    down): the query cannot be answered, the stored events can."""
    client = await Client.connect(dev_stack.settings.temporal_address)
    order_id, customer = str(uuid.uuid4()), f"c-{uuid.uuid4().hex[:10]}"
    handle = await client.start_workflow(
        "NeverRuns",
        id=workflow_id(order_id),
        task_queue="nobody-polls-this",
        search_attributes=TypedSearchAttributes([SearchAttributePair(CUSTOMER_ID, customer)]),
    )
    engine = create_db_engine(dev_stack.settings.db_url("event_store"), pool_size=1)
    try:
        placed = {"customer_id": customer, "items": [{"sku": "MOUSE-ERGO-01", "quantity": 1}]}
        EventStore(engine).append(
            [
                Event(
                    event_id=event_id(order_id, 1),
                    aggregate_id=order_id,
                    sequence=1,
                    event_type=EventType.ORDER_PLACED,
                    data={**placed, "country": "DE"},
                    version=CURRENT_VERSION[EventType.ORDER_PLACED],
                    occurred_at=datetime.now(UTC),
                    user_id=customer,
                )
            ]
        )
        # The module's client is synchronous: off the event loop.
        response = await asyncio.to_thread(api.get, f"/orders/{order_id}")
        assert response.status_code == 200, response.text
        folded = response.json()
        assert (folded["source"], folded["as_of_sequence"], folded["status"]) == (
            "event_store",
            1,
            "PENDING",
        )
        assert (folded["customer_id"], folded["items"]) == (customer, placed["items"])
    finally:
        engine.dispose()
        await handle.terminate()
