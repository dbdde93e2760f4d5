"""The read side's customer views over real HTTP: a customer's UserView once their order is
projected, and who may read it and the customers dashboard when tokens are required."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cloudmart.settings import Settings
from devstack.stack import DevStack
from tests.support import operator_headers
from tests.system.api.test_api import order_body, place, wait_for
from tests.system.api.test_auth import bearer, customer_token


@pytest.fixture(scope="module")
def api(dev_stack: DevStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dev_stack.api_url, timeout=15) as client:
        yield client


def viewed(api: httpx.Client, customer_id: str, completed: int) -> dict[str, Any]:
    """The customer's view, once the projector shows ``completed`` completed orders."""
    deadline = time.monotonic() + 15
    while True:
        response = api.get(f"/customers/{customer_id}/view")
        if response.status_code == 200 and response.json()["completed_orders"] == completed:
            return response.json()
        assert time.monotonic() < deadline, f"never projected: {response.text}"
        time.sleep(0.05)


def test_a_customer_who_ordered_has_a_view_and_counts_in_the_statistics(
    api: httpx.Client, anonymous: httpx.Client, auth_settings: Settings
) -> None:
    cyd, dee = f"cyd-{uuid.uuid4().hex[:8]}", f"dee-{uuid.uuid4().hex[:8]}"
    assert api.get(f"/customers/{cyd}/view").status_code == 404  # no event names cyd yet
    order_id = place(api, order_body(customer=cyd, items=[("KB-MECH-01", 2)]))
    state = wait_for(api, order_id)
    assert state["status"] == "COMPLETED"

    view = viewed(api, cyd, completed=1)
    assert (view["registered"], view["status"], view["profile"]) == (False, None, None)
    assert view["lifetime_spend_cents"] == state["total_cents"]
    assert view["loyalty_points"] == state["total_cents"] // 100
    assert view["last_order"]["order_id"] == order_id
    assert view["orders_by_status"] == {"COMPLETED": 1}
    stats = api.get("/stats/customers")
    assert stats.status_code == 200, stats.text
    assert stats.json()["buyers"] >= 1 and stats.json()["active_customers"] >= 1

    # Tokens required (the same databases): a customer sees their own view alone.
    cyds = bearer(customer_token(auth_settings, cyd))
    dees = bearer(customer_token(auth_settings, dee))
    operator = operator_headers(auth_settings)
    assert anonymous.get(f"/customers/{cyd}/view", headers=cyds).json() == view
    assert anonymous.get(f"/customers/{cyd}/view", headers=operator).status_code == 200
    assert anonymous.get(f"/customers/{cyd}/view").status_code == 401
    other = anonymous.get(f"/customers/{cyd}/view", headers=dees)
    assert other.status_code == 404, other.text  # not even whether cyd exists
    assert other.json() == {"detail": f"customer {cyd} not found"}

    # The dashboard is business-wide: the operator's alone.
    assert anonymous.get("/stats/customers").status_code == 401
    assert anonymous.get("/stats/customers", headers=cyds).status_code == 403
    as_operator = anonymous.get("/stats/customers", headers=operator)
    assert as_operator.status_code == 200 and as_operator.json().keys() == stats.json().keys()


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/customers/not valid!/view", "customer_id"),
        ("/stats/customers?days=0", "days"),
        ("/stats/customers?days=367", "days"),
        ("/stats/customers?days=many", "days"),
    ],
)
def test_bad_input_is_422_naming_the_field(api: httpx.Client, path: str, field: str) -> None:
    response = api.get(path)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][-1] == field
