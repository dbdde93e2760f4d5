"""The audit trail over real HTTP, on the API with tokens required: a named operator's action is
recorded under the operator's name with its outcome, and the log is the operators' alone."""

from __future__ import annotations

import uuid

import httpx

from api.tokens import mint, mint_operator
from cloudmart.settings import Settings
from tests.system.api.test_api import UNKNOWN


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


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
