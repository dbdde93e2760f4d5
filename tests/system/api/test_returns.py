"""The return saga over the real stack (docs/returns.md): an order completes, its customer
returns a line, the warehouse accepts the parcel, and the worker's return consumers restock,
refund and revoke the line's points, one reacting to the other through the event store, while
the read side shows the order PARTIALLY_RETURNED, then RETURNED; and a rejected return goes back
to the customer with nothing refunded."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from devstack.stack import DevStack
from tests.system.api.test_api import order_body

WAIT = {"wait": 20}


@pytest.fixture(scope="module")
def api(dev_stack: DevStack) -> Iterator[httpx.Client]:
    """The dev stack's API: tokens not required (the operator's for the inspection)."""
    with httpx.Client(base_url=dev_stack.api_url, timeout=40) as client:
        yield client


def until(read: Callable[[], dict], done: Callable[[dict], bool], seconds: float = 20) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def completed_order(api: httpx.Client, items: list[tuple[str, int]]) -> tuple[str, str, int]:
    body = order_body(items=items)
    state = api.post("/orders", json=body, params=WAIT).json()["state"]
    assert state["status"] == "COMPLETED", state
    return state["order_id"], body["customer_id"], state["total_cents"]


def return_of(api: httpx.Client, return_id: str) -> dict:
    response = api.get(f"/returns/{return_id}")
    assert response.status_code == 200, response.text
    return response.json()


def listed_status(api: httpx.Client, customer: str) -> str:
    [order] = api.get("/orders", params={"customer_id": customer}).json()["items"]
    return order["status"]


def points(api: httpx.Client, customer: str) -> int:
    return api.get(f"/customers/{customer}/loyalty").json()["points"]


def test_a_returned_line_is_restocked_refunded_and_its_points_revoked(
    api: httpx.Client, as_operator: dict[str, str]
) -> None:
    order_id, customer, total = completed_order(api, [("MOUSE-ERGO-01", 2)])
    awarded = until(lambda: {"p": points(api, customer)}, lambda v: v["p"] > 0)["p"]
    assert awarded == total // 100
    requested = api.post(
        f"/orders/{order_id}/returns", json={"lines": [{"sku": "MOUSE-ERGO-01", "quantity": 1}]}
    )
    assert requested.status_code == 201, requested.text
    return_id, line_amount = requested.json()["return_id"], requested.json()["amount_cents"]
    assert line_amount == total // 2
    labelled = until(
        lambda: return_of(api, return_id), lambda r: r["status"] == "AWAITING_INSPECTION"
    )
    assert labelled["status"] == "AWAITING_INSPECTION", labelled
    inspected = api.post(
        f"/returns/{return_id}/inspection",
        json={"accepted": True, "note": "unused, in its box"},
        headers=as_operator,
    )
    assert inspected.status_code == 202, inspected.text
    done = until(lambda: return_of(api, return_id), lambda r: r["status"] == "RETURNED")
    assert [link["event_type"] for link in done["chain"]] == [
        "ReturnRequested",
        "ReturnShipmentCreated",
        "ReturnAccepted",
        "StockRestocked",
        "ReturnRefunded",
        "PointsRevoked",
    ], done
    assert done["chain"][4]["data"]["amount_cents"] == line_amount
    assert points(api, customer) == (total - line_amount) // 100  # what the order still holds
    partial = until(
        lambda: {"s": listed_status(api, customer)}, lambda v: v["s"] == "PARTIALLY_RETURNED"
    )
    assert partial["s"] == "PARTIALLY_RETURNED"

    rest = api.post(
        f"/orders/{order_id}/returns", json={"lines": [{"sku": "MOUSE-ERGO-01", "quantity": 1}]}
    ).json()["return_id"]
    until(lambda: return_of(api, rest), lambda r: r["status"] == "AWAITING_INSPECTION")
    api.post(
        f"/returns/{rest}/inspection", json={"accepted": True, "note": "fine"}, headers=as_operator
    )
    assert until(lambda: return_of(api, rest), lambda r: r["status"] == "RETURNED")["status"] == (
        "RETURNED"
    )
    whole = until(lambda: {"s": listed_status(api, customer)}, lambda v: v["s"] == "RETURNED")
    assert whole["s"] == "RETURNED" and points(api, customer) == 0


def test_a_rejected_return_is_sent_back_and_nothing_is_refunded(
    api: httpx.Client, as_operator: dict[str, str]
) -> None:
    order_id, customer, _ = completed_order(api, [("MOUSE-ERGO-01", 1)])
    return_id = api.post(
        f"/orders/{order_id}/returns", json={"lines": [{"sku": "MOUSE-ERGO-01", "quantity": 1}]}
    ).json()["return_id"]
    until(lambda: return_of(api, return_id), lambda r: r["status"] == "AWAITING_INSPECTION")
    rejected = api.post(
        f"/returns/{return_id}/inspection",
        json={"accepted": False, "note": "damaged by use"},
        headers=as_operator,
    )
    assert rejected.status_code == 202, rejected.text
    back = until(lambda: return_of(api, return_id), lambda r: r["status"] == "REJECTED")
    assert [link["event_type"] for link in back["chain"]][-2:] == [
        "ReturnRejected",
        "ReturnParcelSentBack",
    ], back
    assert back["waiting"] is None and not back["stuck"]
    assert not any(link["event_type"] == "ReturnRefunded" for link in back["chain"])
    assert listed_status(api, customer) == "COMPLETED"
