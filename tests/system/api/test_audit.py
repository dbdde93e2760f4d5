"""The audit trail over real HTTP, on the API with tokens required: a named operator's action is
recorded under the operator's name with its outcome, and the log is the operators' alone."""

from __future__ import annotations

import uuid

import httpx

from api.tokens import mint, mint_operator
from cloudmart.settings import Settings
from tests.support import operator_headers
from tests.system.api.test_api import UNKNOWN, order_body, place, wait_for


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def named_operator(settings: Settings, name: str) -> dict[str, str]:
    assert settings.auth_secret is not None
    return bearer(mint_operator(name, settings.auth_secret.get_secret_value()))


def test_a_named_operators_action_is_in_the_audit_log_under_its_name(
    anonymous: httpx.Client, auth_settings: Settings
) -> None:
    assert auth_settings.auth_secret is not None
    secret = auth_settings.auth_secret.get_secret_value()
    name = f"alice-{uuid.uuid4().hex[:8]}"
    alice = bearer(mint_operator(name, secret))
    decided = anonymous.post(
        f"/orders/{UNKNOWN}/payment-review", json={"approved": True}, headers=alice
    )
    assert decided.status_code == 404  # no such order: refused, and recorded all the same
    found = anonymous.get("/audit", params={"actor": name}, headers=alice)
    assert found.status_code == 200
    [entry] = found.json()["entries"]
    assert (entry["actor_kind"], entry["action"], entry["resource"], entry["outcome"]) == (
        "operator",
        "POST /orders/{order_id}/payment-review",
        f"/orders/{UNKNOWN}",
        "404",
    )
    assert entry["request_id"] == decided.headers["x-request-id"]

    customer = anonymous.get("/audit", headers=bearer(mint("c-42", secret)))
    assert customer.status_code == 403
    assert anonymous.get("/audit").status_code == 401


def test_the_orders_events_name_the_operator_who_reviewed_and_who_cancelled(
    anonymous: httpx.Client, auth_settings: Settings
) -> None:
    """The saga records who acted (the events' ``user_id``): a named operator's name, or the
    static token's ``operator``, never the order's customer for an operator's cancel."""
    name = f"alice-{uuid.uuid4().hex[:8]}"
    alice = named_operator(auth_settings, name)
    reviewed = place_held(anonymous, alice)
    review = anonymous.post(
        f"/orders/{reviewed}/payment-review", json={"approved": False}, headers=alice
    )
    assert review.status_code == 202, review.text
    cancelled = place_held(anonymous, alice)
    cancel = anonymous.post(
        f"/orders/{cancelled}/cancel", json={"reason": "fraud ring"}, headers=alice
    )
    assert cancel.status_code == 202, cancel.text

    by_static_token = place_held(anonymous, alice)
    static = operator_headers(auth_settings)
    cancel = anonymous.post(f"/orders/{by_static_token}/cancel", json={}, headers=static)
    assert cancel.status_code == 202, cancel.text

    for order_id, event_type, actor in (
        (reviewed, "PaymentReviewed", name),
        (cancelled, "OrderCancelled", name),
        (by_static_token, "OrderCancelled", "operator"),
    ):
        with as_caller(anonymous, alice) as client:
            wait_for(client, order_id)
        events = anonymous.get(f"/orders/{order_id}/events", headers=alice).json()
        actors = {e["user_id"] for e in events if e["event_type"] == event_type}
        assert actors == {actor}, events


def place_held(anonymous: httpx.Client, headers: dict[str, str]) -> str:
    """An order whose payment waits for an operator's review."""
    with as_caller(anonymous, headers) as client:
        order_id = place(client, order_body(token="tok_review"))
        wait_for(client, order_id, {"AWAITING_PAYMENT_REVIEW"})
    return order_id


def as_caller(anonymous: httpx.Client, headers: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=anonymous.base_url, timeout=15, headers=headers)
