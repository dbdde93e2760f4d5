"""Customers over real HTTP: registering, reading (now and as of a point), changing, closing and
erasing an account, against the dev stack (tokens off) and an API process requiring tokens,
where each refuses the wrong caller."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cloudmart.settings import Settings
from tests.support import operator_headers
from tests.system.api.test_auth import bearer


def person(name: str = "Ada Lovelace") -> dict[str, Any]:
    return {"name": name, "email": f"{uuid.uuid4().hex[:10]}@Example.org"}


@pytest.fixture(scope="module")
def api(dev_stack: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dev_stack.api_url, timeout=15) as client:
        yield client


def test_register_change_and_read_the_past(api: httpx.Client) -> None:
    ada = person()
    registered = api.post("/customers", json=ada)
    assert registered.status_code == 201, registered.text
    assert registered.json()["token"] is None  # tokens are off in the dev stack
    customer = registered.json()["customer"]
    me = f"/customers/{customer['customer_id']}"
    assert customer["profile"]["email"] == ada["email"].lower() and customer["version"] == 1

    again = api.post("/customers", json={**ada, "email": ada["email"].upper()})
    assert again.status_code == 409 and "sign in" in again.json()["detail"]

    changed = api.patch(me, json={"name": "Ada King"}, headers={"If-Match": '"1"'})
    assert changed.status_code == 200 and changed.json()["version"] == 2
    stale = api.patch(me, json={"name": "Ada Byron"}, headers={"If-Match": "1"})
    assert stale.status_code == 412, stale.text

    assert api.get(me).json()["profile"]["name"] == "Ada King"
    assert api.get(me, params={"as_of": "1"}).json()["profile"]["name"] == "Ada Lovelace"
    assert api.get(me, params={"as_of": "2000-01-01T00:00:00Z"}).status_code == 404
    bad = api.get(me, params={"as_of": "yesterday"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "as_of"]

    closed = api.post(f"{me}/close", json={"reason": "moving away"})
    assert closed.status_code == 200 and closed.json()["status"] == "CLOSED"
    assert api.patch(me, json={"name": "Ada"}).status_code == 409


def test_an_order_customer_never_registered_is_not_a_customer(api: httpx.Client) -> None:
    unknown = api.get("/customers/c-42")
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "c-42 is not a registered customer"}


def test_with_tokens_each_caller_sees_and_changes_only_their_own(
    anonymous: httpx.Client, auth_settings: Settings
) -> None:
    registered = anonymous.post("/customers", json=person("Grace Hopper"))
    assert registered.status_code == 201, registered.text
    grace, token = registered.json()["customer"], registered.json()["token"]
    me = f"/customers/{grace['customer_id']}"
    other = anonymous.post("/customers", json=person("Eve")).json()["token"]
    operator = operator_headers(auth_settings)

    assert anonymous.get(me).status_code == 401
    assert anonymous.get(me, headers=bearer(token)).json()["profile"]["name"] == "Grace Hopper"
    hidden = anonymous.get(me, headers=bearer(other))
    unknown = anonymous.get("/customers/c-42", headers=bearer(other))
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["detail"] == f"{grace['customer_id']} is not a registered customer"
    assert anonymous.patch(me, json={"name": "Eve"}, headers=bearer(other)).status_code == 404
    assert anonymous.post(f"{me}/close", headers=bearer(other)).status_code == 404
    assert anonymous.get(me, headers=operator).status_code == 200

    assert anonymous.post(f"{me}/erase", headers=bearer(token)).status_code == 403
    erased = anonymous.post(f"{me}/erase", headers=operator)
    assert erased.status_code == 200, erased.text
    assert erased.json()["erased"] is True and erased.json()["profile"] is None
    assert anonymous.post(f"{me}/erase", headers=operator).json() == erased.json()
    assert anonymous.get(me, headers=bearer(token)).json() == erased.json()
