"""A stuck compensation resolved against the real stack, payloads encrypted: the resolution
cancels the round of retries in flight, and the server records that cancellation with details
of its own, unencrypted. The workers used to refuse them, failing the saga's workflow task
forever; the saga now ends FAILED with the compensation RESOLVED and the rest run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devstack.stack import DevStack
from tests.system.api.test_api import order_body


@pytest.fixture(scope="module")
def api(dev_stack: DevStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dev_stack.api_url, timeout=40) as client:
        yield client


def until(api: httpx.Client, order_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        state = api.get(f"/orders/{order_id}").json()
        if state["status"] == status or time.monotonic() > deadline:
            assert state["status"] == status, state
            return state
        time.sleep(0.3)


def test_resolving_a_stuck_refund_lets_the_saga_finish(
    api: httpx.Client, as_operator: dict[str, str]
) -> None:
    # Refunds to this card are refused, and Japan is not delivered to: the refund gets stuck
    # (after 3 attempts in the test stack, tests/conftest.py).
    body = order_body(items=[("CABLE-USBC-2M", 1)], token="tok_norefund", country="JP")
    order_id = api.post("/orders", json=body).json()["order_id"]
    stuck = until(api, order_id, "COMPENSATION_STUCK")
    assert stuck["stuck"]["step"] == "payment.refund", stuck

    resolved = api.post(
        f"/orders/{order_id}/compensation/resolve",
        json={"step": "payment.refund", "note": "refunded from the provider's dashboard"},
        headers=as_operator,
    )
    assert resolved.status_code == 202, resolved.text

    final = until(api, order_id, "FAILED")
    assert final["source"] == "saga"
    assert [(c["name"], c["status"]) for c in final["compensations"]] == [
        ("shipping.cancel", "COMPLETED"),
        ("payment.refund", "RESOLVED"),
        ("inventory.release", "COMPLETED"),
    ]
