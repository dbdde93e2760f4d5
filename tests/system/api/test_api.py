"""The API over real HTTP, against the real dev stack: Temporal dev server, worker, API process."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from api.sagas import IDEMPOTENCY_NAMESPACE, REQUEST_HASH, body_hash, idempotent_order_id
from api.tokens import mint
from cloudmart.contracts.orders import PlaceOrder
from cloudmart.contracts.saga import start_search_attributes, workflow_id
from cloudmart.settings import Settings
from cloudmart.temporal import connect
from devstack.stack import DevStack

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}


@pytest.fixture(scope="module")
def api(dev_stack: DevStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dev_stack.api_url, timeout=15) as client:
        yield client


def order_body(
    *,
    customer: str | None = None,
    items: list[tuple[str, int]] | None = None,
    token: str = "tok_ok",
    country: str = "DE",
) -> dict[str, Any]:
    return {
        "customer_id": customer or f"c-{uuid.uuid4().hex[:10]}",
        "items": [{"sku": s, "quantity": q} for s, q in (items or [("MOUSE-ERGO-01", 1)])],
        "payment_token": token,
        "shipping_address": {
            "name": "Ada Lovelace",
            "line1": "Hauptstr. 1",
            "city": "Berlin",
            "postal_code": "10115",
            "country": country,
        },
    }


def place(api: httpx.Client, body: dict[str, Any], key: str | None = None) -> str:
    headers = {"Idempotency-Key": key} if key else {}
    response = api.post("/orders", json=body, headers=headers)
    assert response.status_code == 202, response.text
    return response.json()["order_id"]


def wait_for(api: httpx.Client, order_id: str, statuses: set[str] = TERMINAL) -> dict[str, Any]:
    """The live state once it reaches one of ``statuses``; a final one, once the read side
    (eventually consistent) has it too, so that reads of stock and lists that follow see it."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = api.get(f"/orders/{order_id}").json()
        if state["status"] in statuses:
            if state["status"] in TERMINAL:
                wait_until_projected(api, state)
            return state
        time.sleep(0.05)
    raise AssertionError(f"order {order_id} never reached {statuses}: {state}")


def wait_until_projected(api: httpx.Client, state: dict[str, Any]) -> None:
    """Until the order is listed with its final status: its last event is projected."""
    params = {"customer_id": state["customer_id"], "status": state["status"], "page_size": 100}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        listed = api.get("/orders", params=params).json()["items"]
        if any(o["order_id"] == state["order_id"] for o in listed):
            return
        time.sleep(0.02)
    raise AssertionError(f"the read side never showed order {state['order_id']} as ended")


def product(api: httpx.Client, sku: str) -> dict[str, Any]:
    return next(p for p in api.get("/products").json() if p["sku"] == sku)


# --- the scenarios of the README's walk-through ---------------------------------------------


def test_an_order_completes_and_its_stock_is_sold(api: httpx.Client) -> None:
    before = product(api, "KB-MECH-01")
    response = api.post("/orders", json=order_body(items=[("KB-MECH-01", 2)]))
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "PENDING"
    assert response.headers["Location"] == f"/orders/{accepted['order_id']}"

    state = wait_for(api, accepted["order_id"])
    assert state["status"] == "COMPLETED"
    assert state["total_cents"] == 2 * before["price_cents"]
    assert state["failure"] is None
    assert [(s["name"], s["status"]) for s in state["steps"]] == [
        ("customers.ensure", "COMPLETED"),
        ("inventory.reserve", "COMPLETED"),
        ("payment.check_fraud", "COMPLETED"),
        ("payment.charge", "COMPLETED"),
        ("shipping.create", "COMPLETED"),
        ("inventory.commit", "COMPLETED"),
    ]
    assert all(set(s) >= {"name", "status", "at"} for s in state["steps"])
    assert state["compensations"] == []
    after = product(api, "KB-MECH-01")
    assert (after["stock_on_hand"], after["reserved"]) == (before["stock_on_hand"] - 2, 0)


def test_the_last_unit_goes_to_one_order_only(api: httpx.Client) -> None:
    first = place(api, order_body(items=[("CAM-VINTAGE-01", 1)]))
    assert wait_for(api, first)["status"] == "COMPLETED"
    second = wait_for(api, place(api, order_body(items=[("CAM-VINTAGE-01", 1)])))
    assert second["status"] == "FAILED"
    assert second["failure"]["type"] == "OutOfStock"
    assert [c["name"] for c in second["compensations"]] == ["inventory.release"]
    assert product(api, "CAM-VINTAGE-01")["stock_on_hand"] == 0


def test_a_declined_payment_fails_the_order_and_releases_stock(api: httpx.Client) -> None:
    before = product(api, "LAMP-LED-01")["stock_on_hand"]
    state = wait_for(api, place(api, order_body(items=[("LAMP-LED-01", 3)], token="tok_decline")))
    assert state["status"] == "FAILED"
    assert state["failure"] == {
        "type": "PaymentDeclined",
        "message": "payment declined: card declined by the issuer",
    }
    assert [c["name"] for c in state["compensations"]] == ["payment.refund", "inventory.release"]
    assert product(api, "LAMP-LED-01")["stock_on_hand"] == before


def test_an_undeliverable_order_is_refunded_then_released(api: httpx.Client) -> None:
    state = wait_for(api, place(api, order_body(country="JP")))
    assert state["status"] == "FAILED"
    assert state["failure"]["type"] == "Undeliverable"
    assert [c["name"] for c in state["compensations"]] == [
        "shipping.cancel",
        "payment.refund",
        "inventory.release",
    ]


def test_a_payment_review_is_approved_through_the_api(
    api: httpx.Client, as_operator: dict[str, str]
) -> None:
    order_id = place(api, order_body(token="tok_review"))
    wait_for(api, order_id, {"AWAITING_PAYMENT_REVIEW"})
    response = api.post(
        f"/orders/{order_id}/payment-review", json={"approved": True}, headers=as_operator
    )
    assert response.status_code == 202, response.text
    # Accepted while it awaited the review; the decision is applied after the answer.
    assert response.json() == {"order_id": order_id, "status": "AWAITING_PAYMENT_REVIEW"}
    assert wait_for(api, order_id)["status"] == "COMPLETED"

    again = api.post(
        f"/orders/{order_id}/payment-review", json={"approved": False}, headers=as_operator
    )
    assert again.status_code == 409
    assert again.json() == {"detail": "order is already COMPLETED"}


def test_a_rejected_payment_review_fails_the_order(
    api: httpx.Client, as_operator: dict[str, str]
) -> None:
    order_id = place(api, order_body(token="tok_review"))
    wait_for(api, order_id, {"AWAITING_PAYMENT_REVIEW"})
    response = api.post(
        f"/orders/{order_id}/payment-review", json={"approved": False}, headers=as_operator
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"order_id": order_id, "status": "AWAITING_PAYMENT_REVIEW"}
    state = wait_for(api, order_id)
    assert state["status"] == "FAILED"
    assert state["failure"]["type"] == "PaymentReviewRejected"


def test_a_payment_review_is_refused_for_an_order_that_never_needed_one(
    api: httpx.Client, as_operator: dict[str, str]
) -> None:
    order_id = place(api, order_body(token="tok_ok"))
    wait_for(api, order_id)
    response = api.post(
        f"/orders/{order_id}/payment-review", json={"approved": True}, headers=as_operator
    )
    assert response.status_code == 409
    assert response.json() == {"detail": "order is already COMPLETED"}


def test_a_cancel_compensates_and_a_late_cancel_is_refused(api: httpx.Client) -> None:
    order_id = place(api, order_body(token="tok_review"))
    wait_for(api, order_id, {"AWAITING_PAYMENT_REVIEW"})
    response = api.post(f"/orders/{order_id}/cancel", json={"reason": "found it cheaper"})
    assert response.status_code == 202, response.text
    assert response.json()["order_id"] == order_id
    state = wait_for(api, order_id)
    assert state["status"] == "CANCELLED"
    assert state["cancel_reason"] == "found it cheaper"
    assert [c["name"] for c in state["compensations"]] == ["payment.refund", "inventory.release"]

    again = api.post(f"/orders/{order_id}/cancel")  # a retry, say: the first answer again
    assert again.status_code == 202
    assert again.json() == response.json()

    completed = place(api, order_body())
    wait_for(api, completed)
    late = api.post(f"/orders/{completed}/cancel")
    assert late.status_code == 409
    assert late.json() == {"detail": "order is already COMPLETED"}


# --- idempotency --------------------------------------------------------------------------


def test_an_idempotency_key_returns_the_same_order_and_starts_one_saga(api: httpx.Client) -> None:
    body = order_body()
    key = f"key-{uuid.uuid4()}"
    first = place(api, body, key)
    wait_for(api, first)
    replay = api.post("/orders", json=body, headers={"Idempotency-Key": key})
    assert replay.status_code == 202
    assert replay.json() == {
        "order_id": first,
        "status": "COMPLETED",
        "state": None,
        "customer_id": body["customer_id"],
        "customer_token": None,  # a guest checkout's only
    }
    listed = wait_until_listed(api, body["customer_id"], 1)
    assert [o["order_id"] for o in listed] == [first]


def test_an_idempotency_key_reused_with_another_body_is_refused(api: httpx.Client) -> None:
    key = f"key-{uuid.uuid4()}"
    body = order_body()
    place(api, body, key)
    other = {**body, "items": [{"sku": "MOUSE-ERGO-01", "quantity": 2}]}  # the same customer
    conflict = api.post("/orders", json=other, headers={"Idempotency-Key": key})
    assert conflict.status_code == 422
    assert conflict.json() == {
        "detail": [
            {
                "loc": ["header", "Idempotency-Key"],
                "msg": "this Idempotency-Key was already used with a different request body",
                "type": "idempotency_conflict",
            }
        ]
    }


def same_key_twice(
    first: httpx.Client, second: httpx.Client, first_customer: str, second_customer: str
) -> None:
    """Two customers, one key: two orders, each retry answering its own customer's."""
    key = f"shared-{uuid.uuid4()}"
    firsts, seconds = order_body(customer=first_customer), order_body(customer=second_customer)
    one = place(first, firsts, key)
    other = place(second, seconds, key)  # not a 422: the first customer's key is not revealed
    assert other != one
    for client, body, order_id in ((first, firsts, one), (second, seconds, other)):
        retry = client.post("/orders", json=body, headers={"Idempotency-Key": key})
        assert retry.status_code == 202, retry.text
        assert retry.json()["order_id"] == order_id
    assert wait_for(first, one)["customer_id"] == first_customer
    assert wait_for(second, other)["customer_id"] == second_customer


def test_an_idempotency_key_is_the_customers_own(api: httpx.Client) -> None:
    same_key_twice(api, api, f"c-{uuid.uuid4().hex[:10]}", f"c-{uuid.uuid4().hex[:10]}")


def test_an_idempotency_key_is_the_customers_own_with_tokens_required(
    anonymous: httpx.Client, auth_settings: Settings
) -> None:
    assert auth_settings.auth_secret is not None
    secret = auth_settings.auth_secret.get_secret_value()
    alice, bob = f"alice-{uuid.uuid4().hex[:8]}", f"bob-{uuid.uuid4().hex[:8]}"

    def client_of(customer: str) -> httpx.Client:
        token = mint(customer, secret)
        return httpx.Client(
            base_url=anonymous.base_url, timeout=15, headers={"Authorization": f"Bearer {token}"}
        )

    with client_of(alice) as as_alice, client_of(bob) as as_bob:
        same_key_twice(as_alice, as_bob, alice, bob)


async def test_a_key_used_before_keys_were_per_customer_still_answers_its_order(
    api: httpx.Client, dev_stack: DevStack
) -> None:
    """An order placed with a key by the version that derived the order id from the key alone:
    a retry by its customer after the upgrade answers it (and places nothing), another
    customer's same key places an order of its own."""
    key, customer = f"before-{uuid.uuid4()}", f"c-{uuid.uuid4().hex[:10]}"
    body = order_body(customer=customer)
    earlier = str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, key))
    client = await connect(dev_stack.settings)
    handle = await client.start_workflow(  # as that version started it; no worker runs it
        "NeverRuns",
        id=workflow_id(earlier),
        task_queue="nobody-polls-this",
        search_attributes=start_search_attributes(customer),
        memo={REQUEST_HASH: body_hash(PlaceOrder.model_validate(body))},
    )
    try:
        retry = await asyncio.to_thread(
            api.post, "/orders", json=body, headers={"Idempotency-Key": key}
        )
        assert retry.status_code == 202, retry.text
        assert retry.json() == {
            "order_id": earlier,
            "status": "PENDING",
            "state": None,
            "customer_id": customer,
            "customer_token": None,
        }
        changed = {**body, "payment_token": "tok_decline"}
        conflict = await asyncio.to_thread(
            api.post, "/orders", json=changed, headers={"Idempotency-Key": key}
        )
        assert conflict.status_code == 422, conflict.text
        assert conflict.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
        theirs = order_body()
        other = await asyncio.to_thread(
            api.post, "/orders", json=theirs, headers={"Idempotency-Key": key}
        )
        assert other.status_code == 202, other.text
        assert other.json()["order_id"] == idempotent_order_id(theirs["customer_id"], key)
    finally:
        await handle.terminate()


# --- reads ----------------------------------------------------------------------------------


def wait_until_listed(api: httpx.Client, customer: str, count: int) -> list[dict[str, Any]]:
    """The read side follows the events: wait until ``count`` orders of ``customer`` are listed
    with their final status."""
    deadline = time.monotonic() + 10
    while True:
        items = api.get("/orders", params={"customer_id": customer}).json()["items"]
        ended = [o for o in items if o["status"] in TERMINAL]
        if len(ended) >= count or time.monotonic() > deadline:
            return items
        time.sleep(0.05)


def test_orders_are_listed_by_customer_and_status_newest_first_in_pages(
    api: httpx.Client,
) -> None:
    customer = f"c-{uuid.uuid4().hex[:10]}"
    # One after the other, so that creation order and completion order agree.
    ok = [wait_for(api, place(api, order_body(customer=customer)))["order_id"] for _ in range(2)]
    failed = wait_for(api, place(api, order_body(customer=customer, token="tok_decline")))
    failed = failed["order_id"]
    listed = wait_until_listed(api, customer, 3)
    assert [o["order_id"] for o in listed] == [failed, ok[1], ok[0]]
    assert all(o["customer_id"] == customer for o in listed)
    assert [o["status"] for o in listed] == ["FAILED", "COMPLETED", "COMPLETED"]
    assert listed[0]["failure_type"] == "PaymentDeclined"

    only_failed = api.get("/orders", params={"customer_id": customer, "status": "FAILED"})
    assert [o["order_id"] for o in only_failed.json()["items"]] == [failed]

    page = api.get("/orders", params={"customer_id": customer, "page_size": 2}).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = api.get(
        "/orders",
        params={"customer_id": customer, "page_size": 2, "cursor": page["next_cursor"]},
    ).json()
    assert [o["order_id"] for o in page["items"] + rest["items"]] == [failed, ok[1], ok[0]]
    assert rest["next_cursor"] is None

    since = api.get(
        "/orders", params={"customer_id": customer, "created_from": listed[1]["created_at"]}
    ).json()
    assert [o["order_id"] for o in since["items"]] == [failed, ok[1]]


def test_products_show_the_catalog_with_stock(api: httpx.Client) -> None:
    products = api.get("/products").json()
    assert len(products) == 12
    assert set(products[0]) == {
        "sku",
        "name",
        "category",
        "price_cents",
        "stock_on_hand",
        "reserved",
        "rating_average",
        "rating_count",
    }
    assert sum(p["stock_on_hand"] + p["reserved"] <= 1 for p in products) == 1


def test_health_reports_every_dependency(api: httpx.Client) -> None:
    response = api.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {
        "temporal": "ok",
        "event_store_db": "ok",
        "inventory_db": "ok",
        "payment_db": "ok",
        "shipping_db": "ok",
        "readmodel_db": "ok",
        "loyalty_db": "ok",
        "customers_db": "ok",
        "audit_db": "ok",
    }
    assert set(body["projections"]) == {"position", "events_behind", "lag_ms"}


@pytest.mark.parametrize(
    "authorization", [None, "Bearer forged.token.here", "Basic YWRhOmxvdmVsYWNl", "Bearer"]
)
def test_health_needs_no_token_where_tokens_are_required(
    anonymous: httpx.Client, authorization: str | None
) -> None:
    """A token that proves nothing makes the caller anonymous here, not a 401: a load
    balancer's probe sends none, and an expired one must not make the API look down."""
    headers = {"Authorization": authorization} if authorization else {}
    response = anonymous.get("/healthz", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok"
    assert set(response.json()["checks"].values()) == {"ok"}


# --- errors ---------------------------------------------------------------------------------

UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", f"/orders/{UNKNOWN}", None),
        ("POST", f"/orders/{UNKNOWN}/cancel", None),
        ("POST", f"/orders/{UNKNOWN}/payment-review", {"approved": True}),
    ],
)
def test_an_unknown_order_is_404(
    api: httpx.Client, as_operator: dict[str, str], method: str, path: str, body: Any
) -> None:
    response = api.request(method, path, json=body, headers=as_operator)
    assert response.status_code == 404
    assert response.json() == {"detail": f"order {UNKNOWN} not found"}


def with_changes(**changes: Any) -> dict[str, Any]:
    body = order_body()
    for dotted, value in changes.items():
        target = body
        *path, last = dotted.split("__")
        for part in path:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (with_changes(items=[]), ["body", "items"]),
        (with_changes(items__0__quantity=0), ["body", "items", 0, "quantity"]),
        (with_changes(items__0__quantity=-3), ["body", "items", 0, "quantity"]),
        (with_changes(items__0__quantity=10**12), ["body", "items", 0, "quantity"]),
        (with_changes(items__0__quantity="2"), ["body", "items", 0, "quantity"]),
        (
            with_changes(items=[{"sku": f"SKU-{n}", "quantity": 1} for n in range(51)]),
            ["body", "items"],
        ),
        (
            with_changes(items=[{"sku": "KB-MECH-01", "quantity": 1}] * 2),
            ["body", "items"],
        ),
        (with_changes(shipping_address__country="DEU"), ["body", "shipping_address", "country"]),
        (with_changes(shipping_address__country="D1"), ["body", "shipping_address", "country"]),
        (with_changes(shipping_address__name="x" * 201), ["body", "shipping_address", "name"]),
        (with_changes(shipping_address__city="Ber\x00lin"), ["body", "shipping_address", "city"]),
        (  # a right-to-left override: "Ada" then "ecalp" reversed, "place" on screen
            with_changes(shipping_address__name="Ada\u202eecalp"),
            ["body", "shipping_address", "name"],
        ),
        (
            with_changes(shipping_address__line1="Haupt\u200bstr. 1"),
            ["body", "shipping_address", "line1"],
        ),
        (with_changes(customer_id='c-1" OR 1=1'), ["body", "customer_id"]),
        (with_changes(payment_token="4242424242424242"), ["body", "payment_token"]),
        (with_changes(total_cents=1), ["body", "total_cents"]),
        (with_changes(items__0__price_cents=1), ["body", "items", 0, "price_cents"]),
    ],
)
def test_invalid_orders_are_422_naming_the_field(
    api: httpx.Client, body: dict[str, Any], field: list[Any]
) -> None:
    response = api.post("/orders", json=body)
    assert response.status_code == 422, response.text
    errors = {tuple(e["loc"]): e["msg"] for e in strict_json(response.text)["detail"]}
    assert errors.get(tuple(field)), errors  # named, with a message saying what is wrong


def test_a_right_to_left_override_is_refused_naming_the_field_and_the_character(
    api: httpx.Client,
) -> None:
    order_id = place(api, order_body(token="tok_review"))
    for path, body, loc, char in (
        (
            "/orders",
            with_changes(shipping_address__city="\u202eBerlin"),
            ["body", "shipping_address", "city"],
            "U+202E",
        ),
        (f"/orders/{order_id}/cancel", {"reason": "too \u2066late"}, ["body", "reason"], "U+2066"),
    ):
        response = api.post(path, json=body)
        assert response.status_code == 422, response.text
        [error] = response.json()["detail"]
        assert error["loc"] == loc
        assert error["msg"] == (
            "Value error, must not contain bidirectional controls or invisible characters "
            f"(found {char})"
        )
    # Refused before the saga heard of it: the order still awaits its review.
    assert wait_for(api, order_id, {"AWAITING_PAYMENT_REVIEW"})["cancel_reason"] is None


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/orders", {"status": "SHIPPED"}, ["query", "status"]),
        ("/orders", {"customer_id": 'x" OR "1"="1'}, ["query", "customer_id"]),
        ("/orders", {"page_size": 0}, ["query", "page_size"]),
        ("/orders", {"cursor": "%%%not-base64"}, ["query", "cursor"]),
        ("/orders", {"cursor": "AAAA"}, ["query", "cursor"]),
        ("/orders", {"cursor": "WyJub3QgYSBkYXRlIiwgIngiXQ=="}, ["query", "cursor"]),
        ("/orders", {"created_from": "2026-01-01T00:00:00"}, ["query", "created_from"]),
        ("/orders", {"created_from": "0001-01-01T00:00:00+14:00"}, ["query", "created_from"]),
        # A cursor this API never hands out: a naive time inside.
        ("/orders", {"cursor": "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwgIngiXQ=="}, ["query", "cursor"]),
        ("/products", {"sort": "popularity"}, ["query", "sort"]),
        ("/products", {"min_price": -1}, ["query", "min_price"]),
        ("/products", {"max_price": 10**40}, ["query", "max_price"]),
        ("/customers/c%20%22x/loyalty", {}, ["path", "customer_id"]),
        ("/orders/not-a-uuid", {}, ["path", "order_id"]),
    ],
)
def test_invalid_reads_are_422_naming_the_field(
    api: httpx.Client, path: str, params: dict[str, Any], field: list[str]
) -> None:
    response = api.get(path, params=params)
    assert response.status_code == 422, response.text
    assert field in [error["loc"] for error in response.json()["detail"]]


def test_a_lone_surrogate_is_422_and_real_unicode_is_welcome(api: httpx.Client) -> None:
    body = order_body()
    raw = httpx.Request("POST", "/", json=body).content.decode()
    surrogate = raw.replace('"Ada Lovelace"', '"Ada \\ud800"')  # valid JSON, not valid UTF-8
    refused = api.post("/orders", content=surrogate, headers={"content-type": "application/json"})
    assert refused.status_code == 422
    errors = {tuple(e["loc"]): e["msg"] for e in strict_json(refused.text)["detail"]}
    assert errors == {
        (
            "body",
            "shipping_address",
            "name",
        ): "Input should be a valid string, unable to parse raw data as a unicode string"
    }

    body["shipping_address"] |= {"name": "Zoë Ålund-李", "city": "Zürich", "country": "nl"}
    state = wait_for(api, place(api, body))
    assert state["status"] == "COMPLETED"  # the country code was normalised to NL


def test_malformed_json_is_422_and_an_oversized_body_413(api: httpx.Client) -> None:
    malformed = api.post(
        "/orders", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 422
    [error] = malformed.json()["detail"]
    assert (error["type"], error["loc"][0], error["msg"]) == (
        "json_invalid",
        "body",
        "JSON decode error",
    )
    oversized = api.post("/orders", json={**order_body(), "padding": "x" * 70_000})
    assert oversized.status_code == 413
    assert oversized.json() == {"detail": "request body too large (limit 65536 bytes)"}


def streamed(body: bytes, chunk: int = 8192) -> Iterator[bytes]:
    """The body as a generator: httpx sends it chunked, with no Content-Length."""
    for start in range(0, len(body), chunk):
        yield body[start : start + chunk]


@pytest.mark.parametrize("over", [0, 1])
def test_a_streamed_body_is_held_to_the_same_limit(
    api: httpx.Client, dev_stack: DevStack, over: int
) -> None:
    """A chunked body declares no length: the limit counts it as it arrives. A valid order
    padded with whitespace, so that without the count the body over the limit would be placed
    (202) rather than refused."""
    limit = dev_stack.settings.api_max_body_bytes
    raw = json.dumps(order_body()).encode()
    body = raw + b" " * (limit + over - len(raw))
    request = api.build_request(
        "POST", "/orders", content=streamed(body), headers={"content-type": "application/json"}
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    response = api.send(request)
    if over:
        assert response.status_code == 413, response.text
        assert response.json() == {"detail": f"request body too large (limit {limit} bytes)"}
    else:
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "PENDING"


def strict_json(text: str) -> Any:
    """``json.loads`` as a strict parser would: NaN and Infinity are not JSON."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def with_quantity(number: str) -> str:
    return json.dumps(order_body()).replace('"quantity": 1', f'"quantity": {number}')


@pytest.mark.parametrize(
    ("path", "raw", "field", "echoed"),
    [
        *(
            ("/orders", with_quantity(number), ["body", "items", 0, "quantity"], echoed)
            for number, echoed in [
                ("NaN", "NaN"),
                ("Infinity", "Infinity"),
                ("-Infinity", "-Infinity"),
                ("1e400", "Infinity"),  # Python's parser makes it an infinity
                ("-1e400", "-Infinity"),
            ]
        ),
        ("/orders", "NaN", ["body"], "NaN"),
        ("/orders", with_quantity("1")[:-1] + ', "price": NaN}', ["body", "price"], "NaN"),
        (f"/orders/{UNKNOWN}/cancel", '{"reason": Infinity}', ["body", "reason"], "Infinity"),
        (f"/orders/{UNKNOWN}/payment-review", '{"approved": NaN}', ["body", "approved"], "NaN"),
    ],
)
def test_non_finite_numbers_are_a_422_in_strict_json(
    api: httpx.Client,
    as_operator: dict[str, str],
    path: str,
    raw: str,
    field: list[Any],
    echoed: str,
) -> None:
    """The request's parser takes NaN, Infinity and 1e400 (an infinity): the 422 that echoes
    them must still be JSON any client can parse, the input written as a string."""
    response = api.post(
        path, content=raw, headers={"content-type": "application/json", **as_operator}
    )
    assert response.status_code == 422, response.text
    errors = {tuple(e["loc"]): e for e in strict_json(response.text)["detail"]}
    assert errors[tuple(field)]["input"] == echoed


@workflow.defn(name="OrderSaga", sandboxed=False)
class BrokenSaga:
    """An execution under an order's id whose state query fails (as a saga whose code can no
    longer replay its history would)."""

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.query(name="state")
    def state(self) -> None:
        raise RuntimeError("cannot rebuild this saga's state")


async def test_a_saga_whose_state_cannot_be_read_is_a_json_500(dev_stack: DevStack) -> None:
    client = await Client.connect(
        dev_stack.settings.temporal_address, data_converter=pydantic_data_converter
    )
    order_id = str(uuid.uuid4())
    async with Worker(client, task_queue="broken-sagas", workflows=[BrokenSaga]):
        handle = await client.start_workflow(
            BrokenSaga.run, id=workflow_id(order_id), task_queue="broken-sagas"
        )
        async with httpx.AsyncClient(base_url=dev_stack.api_url, timeout=15) as api:
            response = await api.get(f"/orders/{order_id}")
        await handle.terminate()
    assert response.status_code == 500
    assert response.json() == {
        "detail": f"the state of order {order_id} could not be read; it has been logged"
    }


# --- the read side ----------------------------------------------------------------------------

EVENT_FIELDS = {
    "event_id",
    "aggregate_id",
    "sequence",
    "event_type",
    "data",
    "version",
    "occurred_at",
    "user_id",
    "correlation_id",
    "causation_id",
}


def test_an_orders_events_are_its_timeline(api: httpx.Client) -> None:
    order_id = place(api, order_body(country="JP"))
    wait_for(api, order_id)
    response = api.get(f"/orders/{order_id}/events")
    assert response.status_code == 200
    events = response.json()
    assert all(set(e) == EVENT_FIELDS for e in events)
    assert [e["event_type"] for e in events] == [
        "OrderPlaced",
        "CustomerChecked",
        "InventoryReserved",
        "FraudCheckPassed",
        "PaymentCharged",
        "ShipmentFailed",
        "CompensationStarted",
        "ShipmentCancelled",
        "PaymentRefunded",
        "InventoryReleased",
        "OrderFailed",
    ]
    assert [e["sequence"] for e in events] == list(range(1, 12))
    assert {e["aggregate_id"] for e in events} == {order_id}
    assert events[0]["version"] == 2 and events[0]["data"]["country"] == "JP"
    assert {(e["correlation_id"], e["causation_id"]) for e in events} == {(None, None)}
    unknown = api.get(f"/orders/{UNKNOWN}/events")
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": f"order {UNKNOWN} not found"}


def test_a_just_placed_orders_events_are_its_story_so_far_never_a_404(
    api: httpx.Client,
) -> None:
    """The saga batches its appends (up to a second): until the first batch is stored the
    timeline is empty, not unknown; then it grows, and it is whole once the order has ended."""
    order_id = place(api, order_body(token="tok_review"))
    story = [
        "OrderPlaced",
        "CustomerChecked",
        "InventoryReserved",
        "FraudCheckPassed",
        "PaymentReviewRequested",
    ]
    seen: list[list[str]] = []
    deadline = time.monotonic() + 10
    while not seen or seen[-1] != story:
        assert time.monotonic() < deadline, seen
        response = api.get(f"/orders/{order_id}/events")
        assert response.status_code == 200, response.text
        seen.append([e["event_type"] for e in response.json()])
        assert seen[-1] == story[: len(seen[-1])]  # always a prefix of the story
        time.sleep(0.05)
    cancelled = api.post(f"/orders/{order_id}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["order_id"] == order_id
    wait_for(api, order_id)
    assert [e["event_type"] for e in api.get(f"/orders/{order_id}/events").json()][-1] == (
        "OrderCancelled"
    )


def test_search_stats_and_loyalty_follow_the_orders(api: httpx.Client) -> None:
    customer = f"c-{uuid.uuid4().hex[:10]}"
    before = {p["sku"]: p for p in api.get("/products", params={"q": "hub"}).json()}
    sold_before = {p["sku"]: p["units_sold"] for p in api.get("/stats").json()["products"]}
    order_id = place(api, order_body(customer=customer, items=[("HUB-USBC-7", 3)]))
    total = wait_for(api, order_id)["total_cents"]

    deadline = time.monotonic() + 10
    while True:  # the read side and loyalty follow the events on their own
        hub = api.get("/products", params={"q": "hub", "in_stock": "true"}).json()
        points = api.get(f"/customers/{customer}/loyalty").json()
        if (
            hub
            and hub[0]["stock_on_hand"] == before["HUB-USBC-7"]["stock_on_hand"] - 3
            and points["points"]
        ):
            break
        assert time.monotonic() < deadline, (hub, points)
        time.sleep(0.05)
    assert [p["sku"] for p in hub] == ["HUB-USBC-7"]
    assert set(hub[0]) == {
        *("sku", "name", "category", "price_cents", "stock_on_hand", "reserved"),
        *("rating_average", "rating_count"),
    }
    stats = api.get("/stats").json()
    sold = {p["sku"]: p["units_sold"] for p in stats["products"]}
    assert sold["HUB-USBC-7"] == sold_before.get("HUB-USBC-7", 0) + 3
    assert points == {
        "customer_id": customer,
        "points": total // 100,
        "history": [
            {
                "event_type": "PointsAwarded",
                "points": total // 100,
                "order_id": order_id,
                "reason": "order completed",
                "occurred_at": points["history"][0]["occurred_at"],
            }
        ],
    }
    cheap_first = api.get("/products", params={"category": "displays", "sort": "price"}).json()
    prices = [p["price_cents"] for p in cheap_first]
    assert prices == sorted(prices) and {p["category"] for p in cheap_first} == {"displays"}
    assert api.get("/customers/nobody-here/loyalty").json()["points"] == 0
