"""A customer's activity over real HTTP, with tokens required: their own timeline (a retried
order recorded once), filtered and paged; another customer's is a 404, no token a 401, bad
filters a 422 naming the field; and recommendations under the same rule."""

from __future__ import annotations

import uuid

import httpx

from cloudmart.settings import Settings
from tests.support import operator_headers
from tests.system.api.test_api import order_body
from tests.system.api.test_auth import bearer, customer_token


def test_a_customer_sees_their_own_activity_and_no_one_elses(
    anonymous: httpx.Client, auth_settings: Settings
) -> None:
    ann, bob = (f"{name}-{uuid.uuid4().hex[:8]}" for name in ("ann", "bob"))
    as_ann, as_bob = (bearer(customer_token(auth_settings, c)) for c in (ann, bob))
    search = anonymous.get("/products", params={"category": "office"}, headers=as_ann)
    assert search.status_code == 200, search.text
    body = order_body(customer=ann)
    key = {"Idempotency-Key": f"retried-{ann}"}
    placed = [anonymous.post("/orders", json=body, headers={**as_ann, **key}) for _ in range(2)]
    assert [p.status_code for p in placed] == [202, 202], placed[0].text
    order_id = placed[0].json()["order_id"]
    assert placed[1].json()["order_id"] == order_id  # the retry: the same order...

    mine = anonymous.get(f"/customers/{ann}/activity", headers=as_ann)
    assert mine.status_code == 200, mine.text
    items = mine.json()["items"]
    assert [(e["type"], e["subject"]) for e in items] == [  # ...recorded once, newest first
        ("order_placed", order_id),
        ("searched", None),
    ]
    assert items[0]["data"] == {"items": [{"sku": "MOUSE-ERGO-01", "quantity": 1}]}
    assert items[1]["data"] == {"filters": {"category": "office"}}

    only_searches = anonymous.get(
        f"/customers/{ann}/activity", params={"type": "searched", "limit": 1}, headers=as_ann
    )
    assert [e["type"] for e in only_searches.json()["items"]] == ["searched"]
    as_operator = operator_headers(auth_settings)
    assert anonymous.get(f"/customers/{ann}/activity", headers=as_operator).status_code == 200

    for path in (f"/customers/{ann}/activity", f"/customers/{ann}/recommendations"):
        others = anonymous.get(path, headers=as_bob)
        assert others.status_code == 404, others.text  # as if there were no such customer
        assert others.json() == {"detail": f"customer {ann} not found"}
        assert anonymous.get(path).status_code == 401
    assert anonymous.get(f"/customers/{ann}/recommendations", headers=as_ann).status_code == 200

    for params, field in (
        ({"since": "2026-12-01T10:00:00"}, "since"),  # no time zone
        ({"type": "dreamed"}, "type"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"limit": 0}, "limit"),
    ):
        bad = anonymous.get(f"/customers/{ann}/activity", params=params, headers=as_ann)
        assert bad.status_code == 422, (params, bad.text)
        assert bad.json()["detail"][0]["loc"][:2] == ["query", field]
