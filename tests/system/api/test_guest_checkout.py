"""A guest checkout over real HTTP: no customer id and no token in, the saga's first step opens
the guest's account, and the answer carries that customer's id and (tokens required) token."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devstack.stack import DevStack
from tests.system.api.test_api import order_body

WAIT = {"wait": 10}


@pytest.fixture(scope="module")
def api(dev_stack: DevStack) -> Iterator[httpx.Client]:
    """The dev stack's API: tokens not required."""
    with httpx.Client(base_url=dev_stack.api_url, timeout=40) as client:
        yield client


def guest_body(**changes: Any) -> dict[str, Any]:
    body = order_body(**changes)
    del body["customer_id"]
    email = f"grace-{uuid.uuid4().hex[:8]}@example.com"
    return {**body, "guest": {"name": "Grace Hopper", "email": email}}


def test_a_guest_checks_out_without_a_token_and_gets_one(anonymous: httpx.Client) -> None:
    body = guest_body()
    placed = anonymous.post("/orders", json=body, params=WAIT, headers={"Idempotency-Key": "g-1"})
    assert placed.status_code == 202, placed.text
    accepted = placed.json()
    assert accepted["customer_id"].startswith("guest-") and accepted["customer_token"]
    state = accepted["state"]
    assert state["status"] == "COMPLETED", state
    assert state["customer_id"] == accepted["customer_id"]
    assert state["steps"][0] == {**state["steps"][0], "name": "customers.ensure"}

    # The token is the new customer's: it reads this order; no token reads nothing.
    order = f"/orders/{accepted['order_id']}"
    mine = {"Authorization": f"Bearer {accepted['customer_token']}"}
    assert anonymous.get(order, headers=mine).json()["status"] == "COMPLETED"
    assert anonymous.get(order).status_code == 401
    events = [e["event_type"] for e in anonymous.get(f"{order}/events", headers=mine).json()]
    assert events[:2] == ["OrderPlaced", "CustomerChecked"]

    # A retry with the same key is the same order, for the same guest account.
    again = anonymous.post("/orders", json=body, headers={"Idempotency-Key": "g-1"}).json()
    assert (again["order_id"], again["customer_id"]) == (
        accepted["order_id"],
        accepted["customer_id"],
    )


def test_a_customers_order_still_needs_its_token(anonymous: httpx.Client) -> None:
    response = anonymous.post("/orders", json=order_body())
    assert response.status_code == 401, response.text


def test_an_order_names_a_customer_or_a_guest_never_both_nor_neither(
    anonymous: httpx.Client,
) -> None:
    both = {**guest_body(), "customer_id": "c-42"}
    neither = {k: v for k, v in guest_body().items() if k != "guest"}
    for body, says in ((both, "not both"), (neither, "or guest")):
        response = anonymous.post("/orders", json=body)
        assert response.status_code == 422, response.text
        [error] = response.json()["detail"]
        assert error["loc"] == ["body", "guest"] and says in error["msg"]


def test_a_guest_order_that_fails_cancels_the_account(api: httpx.Client) -> None:
    """Tokens off (the dev stack's API): no token in the answer; Cancel User runs last."""
    accepted = api.post("/orders", json=guest_body(token="tok_decline"), params=WAIT).json()
    assert accepted["customer_token"] is None
    state = accepted["state"]
    assert state["status"] == "FAILED", state
    last = state["compensations"][-1]
    assert last["name"] == "customers.cancel_user"
    assert last["detail"] == f"UNDONE: cancelled account {accepted['customer_id']}"
