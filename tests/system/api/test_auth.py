"""Access control over real HTTP: an API process with CLOUDMART_REQUIRE_AUTH on, over the dev
stack's Temporal, worker and databases. Operator actions need the operator token; a customer
token sees its own customer's orders only, and another customer's order is a 404 exactly like
an unknown one."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from api.tokens import DEFAULT_TTL, mint
from cloudmart.contracts.saga import CUSTOMER_ID, workflow_id
from cloudmart.settings import Settings
from devstack.processes import free_port
from devstack.stack import DevStack
from tests.support import api_process, operator_headers
from tests.system.api.test_api import UNKNOWN, order_body, place, wait_for

SECRET = "s" * 32


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- tokens -----------------------------------------------------------------------------------


# --- settings ---------------------------------------------------------------------------------


# --- over HTTP, with tokens required ----------------------------------------------------------


def client_for(anonymous: httpx.Client, headers: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=anonymous.base_url, timeout=15, headers=headers) as client:
        yield client


@pytest.fixture(scope="module")
def operator(anonymous: httpx.Client, auth_settings: Settings) -> Iterator[httpx.Client]:
    yield from client_for(anonymous, operator_headers(auth_settings))


def customer_token(
    settings: Settings, customer_id: str, *, ttl: timedelta = DEFAULT_TTL, now: float | None = None
) -> str:
    assert settings.auth_secret is not None
    return mint(customer_id, settings.auth_secret.get_secret_value(), ttl=ttl, now=now)


ALICE = f"alice-{uuid.uuid4().hex[:8]}"
BOB = f"bob-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def alice(anonymous: httpx.Client, auth_settings: Settings) -> Iterator[httpx.Client]:
    yield from client_for(anonymous, bearer(customer_token(auth_settings, ALICE)))


@pytest.fixture(scope="module")
def bob(anonymous: httpx.Client, auth_settings: Settings) -> Iterator[httpx.Client]:
    yield from client_for(anonymous, bearer(customer_token(auth_settings, BOB)))


@pytest.fixture(scope="module")
def alices_order(alice: httpx.Client) -> str:
    """Awaiting payment review: alive, and cancellable, for as long as the module runs; and on
    the read side (its first events are stored within the saga's batching window)."""
    order_id = place(alice, order_body(customer=ALICE, token="tok_review"))
    wait_for(alice, order_id, {"AWAITING_PAYMENT_REVIEW"})
    deadline = time.monotonic() + 10
    while order_id not in {o["order_id"] for o in alice.get("/orders").json()["items"]}:
        assert time.monotonic() < deadline, "the order never reached the read side"
        time.sleep(0.05)
    return order_id


CUSTOMER_ROUTES = [
    ("GET", "/orders", None),
    ("GET", f"/orders/{UNKNOWN}", None),
    ("GET", f"/orders/{UNKNOWN}/events", None),
    ("POST", f"/orders/{UNKNOWN}/cancel", None),
    ("GET", "/customers/c-1/loyalty", None),
    ("POST", "/orders", order_body()),
]
OPERATOR_ROUTES = [
    ("POST", f"/orders/{UNKNOWN}/payment-review", {"approved": True}),
    ("POST", "/projections/rebuild", None),
    ("POST", f"/orders/{UNKNOWN}/compensation/retry", None),
    ("POST", f"/orders/{UNKNOWN}/compensation/resolve", {"step": "payment.refund", "note": "x"}),
    ("POST", f"/orders/{UNKNOWN}/step/retry", None),
    ("POST", f"/orders/{UNKNOWN}/abort", None),
    ("GET", "/stats", None),  # business-wide figures
    ("GET", "/stats/customers", None),
    ("POST", f"/customers/{UNKNOWN}/erase", None),
    ("GET", "/audit", None),
    ("POST", f"/returns/{UNKNOWN}/inspection", {"accepted": True}),
    ("GET", "/choreography/dead-letters", None),
    ("POST", f"/choreography/dead-letters/shipping-returns/{UNKNOWN}/retry", None),
    ("POST", f"/choreography/dead-letters/shipping-returns/{UNKNOWN}/skip", None),
]


@pytest.mark.parametrize(("method", "path", "body"), CUSTOMER_ROUTES + OPERATOR_ROUTES)
def test_without_a_token_it_is_401_asking_for_a_bearer(
    anonymous: httpx.Client, method: str, path: str, body: object
) -> None:
    response = anonymous.request(method, path, json=body)
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "Authorization: Bearer" in response.json()["detail"]


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        mint("c-1", "x" * 32),  # forged: signed with another secret
        "expired",
    ],
)
@pytest.mark.parametrize(("method", "path", "body"), CUSTOMER_ROUTES)
def test_a_bad_forged_or_expired_token_is_401(
    anonymous: httpx.Client,
    auth_settings: Settings,
    token: str,
    method: str,
    path: str,
    body: object,
) -> None:
    if token == "expired":
        token = customer_token(auth_settings, "c-1", now=time.time() - 7200, ttl=timedelta(hours=1))
    response = anonymous.request(method, path, json=body, headers=bearer(token))
    assert response.status_code == 401, response.text
    assert response.json()["detail"].startswith("invalid token: ")
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path", "body"), OPERATOR_ROUTES)
def test_a_customer_token_or_a_wrong_operator_token_is_403_on_operator_actions(
    anonymous: httpx.Client, alice: httpx.Client, method: str, path: str, body: object
) -> None:
    for headers in (alice.headers, bearer("not-the-operator-token-at-all-000000")):
        response = anonymous.request(method, path, json=body, headers=headers)
        assert response.status_code == 403, response.text
        assert response.json() == {"detail": "an operator action: this token is not the operator's"}


def test_public_routes_need_no_token(anonymous: httpx.Client) -> None:
    assert anonymous.get("/products").status_code == 200
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/openapi.json").status_code == 200


def test_a_customer_sees_and_cancels_their_own_order(
    alice: httpx.Client, bob: httpx.Client, alices_order: str
) -> None:
    state = alice.get(f"/orders/{alices_order}")
    assert state.status_code == 200
    assert state.json()["customer_id"] == ALICE
    events = alice.get(f"/orders/{alices_order}/events")  # [] until its first batch is stored
    assert events.status_code == 200
    assert [e["event_type"] for e in events.json()][:1] in ([], ["OrderPlaced"])
    assert alice.get(f"/customers/{ALICE}/loyalty").status_code == 200

    # An order of its own to cancel: the module's stays alive for the other tests.
    order_id = place(alice, order_body(customer=ALICE, token="tok_review"))
    wait_for(alice, order_id, {"AWAITING_PAYMENT_REVIEW"})
    reason = {"reason": "changed my mind"}
    theirs = bob.post(f"/orders/{order_id}/cancel", json={"reason": "mine now"})
    assert theirs.status_code == 404, theirs.text
    assert theirs.json() == {"detail": f"order {order_id} not found"}
    cancelled = alice.post(f"/orders/{order_id}/cancel", json=reason)
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json() == {"order_id": order_id, "status": "AWAITING_PAYMENT_REVIEW"}
    ended = wait_for(alice, order_id)
    assert (ended["status"], ended["cancel_reason"]) == ("CANCELLED", "changed my mind")


async def test_an_order_with_no_events_stored_yet_is_an_empty_timeline_to_its_owner_only(
    alice: httpx.Client, bob: httpx.Client, auth_settings: Settings
) -> None:
    """A saga that exists but has stored nothing yet (here no worker ever picks it up; in life,
    the first second of its batching window): [] for its customer, the unknown order's 404 for
    anyone else. Who owns it comes from its CustomerId search attribute."""
    client = await Client.connect(auth_settings.temporal_address)
    order_id = str(uuid.uuid4())
    handle = await client.start_workflow(
        "NeverRuns",
        id=workflow_id(order_id),
        task_queue="nobody-polls-this",
        search_attributes=TypedSearchAttributes([SearchAttributePair(CUSTOMER_ID, ALICE)]),
    )
    try:
        # The clients are the module's synchronous ones: off the event loop.
        mine = await asyncio.to_thread(alice.get, f"/orders/{order_id}/events")
        assert mine.status_code == 200 and mine.json() == []
        theirs = await asyncio.to_thread(bob.get, f"/orders/{order_id}/events")
        unknown = await asyncio.to_thread(bob.get, f"/orders/{UNKNOWN}/events")
        assert theirs.status_code == unknown.status_code == 404
        assert theirs.json()["detail"] == unknown.json()["detail"].replace(UNKNOWN, order_id)
    finally:
        await handle.terminate()


@pytest.mark.parametrize(
    ("method", "suffix"),
    # ?wait: the owner is checked before any waiting, so the 404 comes at once.
    [("GET", ""), ("GET", "?wait=30"), ("GET", "/events"), ("POST", "/cancel")],
)
def test_another_customers_order_is_404_exactly_like_an_unknown_one(
    bob: httpx.Client, alices_order: str, method: str, suffix: str
) -> None:
    theirs = bob.request(method, f"/orders/{alices_order}{suffix}")
    unknown = bob.request(method, f"/orders/{UNKNOWN}{suffix}")
    assert (theirs.status_code, unknown.status_code) == (404, 404)
    assert theirs.json() == {"detail": f"order {alices_order} not found"}
    assert unknown.json() == {"detail": f"order {UNKNOWN} not found"}
    assert set(theirs.headers) == set(unknown.headers)


def test_another_customers_cancel_never_reaches_the_saga(
    alice: httpx.Client, bob: httpx.Client, operator: httpx.Client, alices_order: str
) -> None:
    assert (
        bob.post(f"/orders/{alices_order}/cancel", json={"reason": "mine now"}).status_code == 404
    )
    state = operator.get(f"/orders/{alices_order}").json()
    assert state["status"] == "AWAITING_PAYMENT_REVIEW"
    assert state["cancel_reason"] is None


def test_another_customers_loyalty_is_404(alice: httpx.Client, bob: httpx.Client) -> None:
    response = bob.get(f"/customers/{ALICE}/loyalty")
    assert response.status_code == 404
    assert response.json() == {"detail": f"customer {ALICE} not found"}


def test_a_customer_places_orders_only_for_themselves(alice: httpx.Client) -> None:
    response = alice.post("/orders", json=order_body(customer="someone-else"))
    assert response.status_code == 403
    assert response.json()["detail"].startswith("customer_id: ")


def test_the_list_is_limited_to_the_callers_own_orders(
    alice: httpx.Client, bob: httpx.Client, operator: httpx.Client, alices_order: str
) -> None:
    bobs = wait_for(bob, place(bob, order_body(customer=BOB)))["order_id"]
    listed = bob.get("/orders", params={"page_size": 100}).json()["items"]
    assert [o["order_id"] for o in listed] == [bobs]
    assert bob.get("/orders", params={"customer_id": BOB}).status_code == 200
    others = bob.get("/orders", params={"customer_id": ALICE})
    assert others.status_code == 403
    assert others.json()["detail"].startswith("customer_id: ")

    everyone = operator.get("/orders", params={"page_size": 100}).json()["items"]
    assert {bobs, alices_order} <= {o["order_id"] for o in everyone}


def test_the_operator_sees_every_order_and_reviews_payments(
    operator: httpx.Client, alice: httpx.Client
) -> None:
    order_id = place(alice, order_body(customer=ALICE, token="tok_review"))
    wait_for(operator, order_id, {"AWAITING_PAYMENT_REVIEW"})
    assert operator.get(f"/orders/{order_id}/events").status_code == 200
    assert operator.get(f"/customers/{ALICE}/loyalty").status_code == 200
    assert (
        alice.post(f"/orders/{order_id}/payment-review", json={"approved": True}).status_code == 403
    )
    review = operator.post(f"/orders/{order_id}/payment-review", json={"approved": True})
    assert review.status_code == 202, review.text
    assert wait_for(alice, order_id)["status"] == "COMPLETED"
    assert operator.get("/stats").status_code == 200


def test_stuck_compensations_are_the_operators_to_list_retry_and_resolve(
    operator: httpx.Client, alice: httpx.Client
) -> None:
    """The dead-letter path itself is proven in tests/workflows/test_stuck_compensations.py;
    here, what the API makes of it."""
    alices_order = place(alice, order_body(customer=ALICE, token="tok_review"))
    wait_for(alice, alices_order, {"AWAITING_PAYMENT_REVIEW"})
    listed = operator.get("/orders", params={"status": "COMPENSATION_STUCK"})
    assert listed.status_code == 200 and alices_order not in listed.text
    retry = operator.post(f"/orders/{alices_order}/compensation/retry")
    assert retry.status_code == 409, retry.text
    assert "no compensation is stuck" in retry.json()["detail"]
    resolve = operator.post(
        f"/orders/{alices_order}/compensation/resolve",
        json={"step": "payment.refund", "note": "refunded by hand"},
    )
    assert resolve.status_code == 409 and "no compensation is stuck" in resolve.text
    bad = operator.post(
        f"/orders/{alices_order}/compensation/resolve", json={"step": "refund everything"}
    )
    assert bad.status_code == 422
    assert {tuple(e["loc"]) for e in bad.json()["detail"]} == {("body", "step"), ("body", "note")}
    assert alice.post(f"/orders/{alices_order}/compensation/retry").status_code == 403


def test_stuck_steps_are_the_operators_to_list_retry_and_abort(
    operator: httpx.Client, alice: httpx.Client, alices_order: str
) -> None:
    """The dead letter of the steps is proven in tests/workflows/test_stuck_steps.py; here,
    what the API makes of it, and that the audit log has each attempt. Alice's order awaits
    a payment review: no step of it is stuck."""
    stuck = operator.get("/orders", params={"status": "STEP_STUCK"}).json()["items"]
    assert alices_order not in {o["order_id"] for o in stuck}
    retry = operator.post(f"/orders/{alices_order}/step/retry")
    assert retry.status_code == 409, retry.text
    assert retry.json()["detail"] == "order is AWAITING_PAYMENT_REVIEW, no step is stuck"
    abort = operator.post(f"/orders/{alices_order}/abort", json={"reason": "provider gone"})
    assert abort.status_code == 409 and "no step is stuck" in abort.json()["detail"]
    assert operator.post(f"/orders/{alices_order}/abort").status_code == 409  # no body: a default
    bad = operator.post(f"/orders/{alices_order}/abort", json={"reason": "x" * 501})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "reason"]
    assert operator.post(f"/orders/{UNKNOWN}/step/retry").status_code == 404
    assert alice.post(f"/orders/{alices_order}/abort").status_code == 403
    assert alice.post(f"/orders/{alices_order}/step/retry").status_code == 403

    audited = operator.get(
        "/audit",
        params={"action": "POST /orders/{order_id}/abort", "resource": f"/orders/{alices_order}"},
    ).json()["entries"]
    assert [(e["actor_kind"], e["actor"], e["outcome"]) for e in audited] == [
        ("operator", "operator", "409"),
        ("operator", "operator", "409"),
        ("operator", "operator", "422"),
        ("customer", ALICE, "403"),
    ]
    retried = operator.get(
        "/audit", params={"action": "POST /orders/{order_id}/step/retry"}
    ).json()["entries"]
    assert ("operator", f"/orders/{alices_order}", "409") in {
        (e["actor"], e["resource"], e["outcome"]) for e in retried
    }


def test_the_operator_rebuilds_the_projections_while_the_projector_runs(
    operator: httpx.Client, alice: httpx.Client, alices_order: str
) -> None:
    response = operator.post("/projections/rebuild")
    assert response.status_code == 200, response.text
    rebuilt = response.json()
    assert set(rebuilt) == {"events", "position", "seconds"}
    assert rebuilt["events"] > 0 and rebuilt["position"] >= rebuilt["events"]
    # The read side is whole again: the customer's order is listed with its status.
    listed = alice.get("/orders").json()["items"]
    assert alices_order in {o["order_id"] for o in listed}


def test_without_an_operator_token_configured_operator_actions_are_off(
    dev_stack: DevStack,
) -> None:
    settings = dev_stack.settings.model_copy(
        update={"api_port": free_port(), "operator_token": None}
    )
    with api_process(settings) as api:
        for method, path, body in OPERATOR_ROUTES[:2]:
            response = api.request(method, path, json=body, headers=bearer("x" * 40))
            assert response.status_code == 503
            assert "no operator token is configured" in response.json()["detail"]


def security(api: httpx.Client) -> dict[str, object]:
    schema = api.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    return {
        f"{method.upper()} {path}": operation.get("security")
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    }


def test_the_schema_says_which_token_each_route_needs(
    anonymous: httpx.Client, dev_stack: DevStack
) -> None:
    bearer_only, optional = [{"bearer": []}], [{}, {"bearer": []}]
    required = security(anonymous)
    assert required["POST /orders/{order_id}/payment-review"] == bearer_only
    assert required["POST /projections/rebuild"] == bearer_only
    assert required["GET /orders/{order_id}"] == bearer_only
    assert required["GET /stats"] == bearer_only
    assert required["GET /products"] is None and required["GET /healthz"] is None
    with httpx.Client(base_url=dev_stack.api_url) as auth_off:
        off = security(auth_off)
    assert off["POST /orders/{order_id}/payment-review"] == bearer_only
    assert off["GET /orders/{order_id}"] == optional
    assert off["GET /stats"] == optional
    assert {k for k, v in off.items() if v != required[k]} == {
        k for k, v in required.items() if v == bearer_only
    } - {
        "POST /orders/{order_id}/payment-review",
        "POST /projections/rebuild",
        "POST /orders/{order_id}/compensation/retry",
        "POST /orders/{order_id}/compensation/resolve",
        "POST /orders/{order_id}/step/retry",
        "POST /orders/{order_id}/abort",
        "POST /codec/decode",  # the operator's, or a codec session's (api/routes/codec.py)
        "POST /codec/session",  # the operator token buys the session
        "GET /audit",
        "POST /customers/{customer_id}/erase",
        "POST /returns/{return_id}/inspection",
        "GET /choreography/dead-letters",
        "POST /choreography/dead-letters/{consumer}/{event_id}/retry",
        "POST /choreography/dead-letters/{consumer}/{event_id}/skip",
    }
