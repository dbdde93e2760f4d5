"""Product ratings over real HTTP, against the dev stack (customer tokens off) and an API process
with tokens required: only a customer with a completed order of the product rates it, once,
changeably; the search shows the ratings once the projector has caught up."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cloudmart.settings import Settings
from tests.support import operator_headers
from tests.system.api.test_api import order_body, place, wait_for
from tests.system.api.test_auth import bearer, customer_token


def customer(name: str = "rater") -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def bought(api: httpx.Client, customer_id: str, sku: str, token: str = "tok_ok") -> str:
    """The customer's order of ``sku``, ended (COMPLETED with ``tok_ok``)."""
    order_id = place(api, order_body(customer=customer_id, items=[(sku, 1)], token=token))
    return wait_for(api, order_id)["status"]


def rating_of(api: httpx.Client, sku: str, expected: tuple[float | None, int]) -> list[dict]:
    """The search, once the projector shows ``sku`` with ``(rating_average, rating_count)``."""
    deadline = time.monotonic() + 15
    while True:
        products = api.get("/products").json()
        found = next(p for p in products if p["sku"] == sku)
        if (found["rating_average"], found["rating_count"]) == expected:
            return products
        assert time.monotonic() < deadline, f"{sku} never showed {expected}: {found}"
        time.sleep(0.05)


def assert_sorted_by_rating(products: list[dict[str, Any]]) -> None:
    """Highest average first, ties by more ratings then sku, unrated last."""
    key = [
        (p["rating_average"] is None, -(p["rating_average"] or 0), -p["rating_count"], p["sku"])
        for p in products
    ]
    assert key == sorted(key)


def skus(api: httpx.Client, **params: Any) -> list[str]:
    response = api.get("/products", params=params)
    assert response.status_code == 200, response.text
    return [p["sku"] for p in response.json()]


@pytest.fixture(scope="module")
def api(dev_stack: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dev_stack.api_url, timeout=15) as client:
        yield client


def test_a_buyer_rates_changes_it_and_the_search_follows(api: httpx.Client) -> None:
    ada, sku = customer("ada"), "HEADSET-01"
    assert bought(api, ada, sku) == "COMPLETED"

    first = api.post(f"/products/{sku}/ratings", json={"customer_id": ada, "stars": 5})
    assert first.status_code == 201, first.text
    assert first.json() == {
        "sku": sku,
        "customer_id": ada,
        "stars": 5,
        "comment": None,
        "outcome": "created",
    }
    rating_of(api, sku, (5.0, 1))
    assert sku in skus(api, min_rating=5)
    by_rating = api.get("/products", params={"sort": "rating"}).json()
    assert_sorted_by_rating(by_rating)
    assert by_rating[0]["rating_average"] == 5.0

    body = {"customer_id": ada, "stars": 1, "comment": "It broke in a week."}
    changed = api.post(f"/products/{sku}/ratings", json=body)
    assert changed.status_code == 200, changed.text
    assert changed.json()["outcome"] == "changed"
    assert changed.json()["comment"] == "It broke in a week."
    rating_of(api, sku, (1.0, 1))  # superseded: still one rating, now 1 star
    assert sku not in skus(api, min_rating=2)
    assert sku in skus(api, min_rating=1)
    by_rating = api.get("/products", params={"sort": "rating"}).json()
    assert_sorted_by_rating(by_rating)
    assert by_rating.index(next(p for p in by_rating if p["sku"] == sku)) < len(
        [p for p in by_rating if p["rating_count"]]
    )  # rated: before every unrated product

    again = api.post(f"/products/{sku}/ratings", json=body)
    assert (again.status_code, again.json()["outcome"]) == (200, "unchanged")


def test_no_completed_order_of_the_product_is_403_and_an_unknown_sku_404(
    api: httpx.Client,
) -> None:
    bea = customer("bea")
    stars = {"customer_id": bea, "stars": 4}
    nothing = api.post("/products/ARM-DUAL-01/ratings", json=stars)
    assert nothing.status_code == 403, nothing.text
    assert "no completed order with product ARM-DUAL-01" in nothing.json()["detail"]

    assert bought(api, bea, "ARM-DUAL-01", token="tok_decline") == "FAILED"
    assert api.post("/products/ARM-DUAL-01/ratings", json=stars).status_code == 403
    assert bought(api, bea, "LAMP-LED-01") == "COMPLETED"  # another product: still 403
    assert api.post("/products/ARM-DUAL-01/ratings", json=stars).status_code == 403

    unknown = api.post("/products/NO-SUCH-SKU/ratings", json=stars)
    assert unknown.status_code == 404, unknown.text
    assert unknown.json() == {"detail": "product NO-SUCH-SKU not found"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"stars": 0}, "stars"),
        ({"stars": 6}, "stars"),
        ({"stars": 4.5}, "stars"),
        ({"stars": "5"}, "stars"),
        ({}, "stars"),
        ({"stars": 5, "comment": "x" * 501}, "comment"),
        ({"stars": 5, "comment": "bad\u0007bell"}, "comment"),
        ({"stars": 5, "comment": "evil \u202etxt.exe"}, "comment"),
        ({"stars": 5, "customer_id": "not valid!"}, "customer_id"),
        ({"stars": 5, "verified": True}, "verified"),
    ],
)
def test_a_bad_rating_is_422_naming_the_field(
    api: httpx.Client, body: dict[str, Any], field: str
) -> None:
    response = api.post("/products/KB-MECH-01/ratings", json={"customer_id": "c-1", **body})
    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["detail"]] == [["body", field]]


def test_without_a_token_the_body_must_name_the_customer(api: httpx.Client) -> None:
    response = api.post("/products/KB-MECH-01/ratings", json={"stars": 5})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "customer_id"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"min_rating": 5.1}, "min_rating"),
        ({"min_rating": -1}, "min_rating"),
        ({"min_rating": "NaN"}, "min_rating"),
        ({"min_rating": "high"}, "min_rating"),
        ({"sort": "stars"}, "sort"),
    ],
)
def test_a_bad_rating_search_is_422_naming_the_field(
    api: httpx.Client, params: dict[str, Any], field: str
) -> None:
    response = api.get("/products", params=params)
    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["detail"]] == [["query", field]]


# --- tokens required: the customer is the token's ----------------------------------------------


def client(anonymous: httpx.Client, headers: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=anonymous.base_url, timeout=15, headers=headers)


def test_with_tokens_a_customer_rates_as_the_token_says(
    anonymous: httpx.Client, auth_settings: Settings
) -> None:
    cyd, dee, sku = customer("cyd"), customer("dee"), "HUB-USBC-7"
    cyds = client(anonymous, bearer(customer_token(auth_settings, cyd)))
    dees = client(anonymous, bearer(customer_token(auth_settings, dee)))
    operator = client(anonymous, operator_headers(auth_settings))
    assert bought(cyds, cyd, sku) == "COMPLETED"

    assert anonymous.post(f"/products/{sku}/ratings", json={"stars": 4}).status_code == 401
    as_dee = cyds.post(f"/products/{sku}/ratings", json={"customer_id": dee, "stars": 1})
    assert as_dee.status_code == 403, as_dee.text
    assert as_dee.json()["detail"].startswith("customer_id:")
    # Dee has bought nothing: her token rates as her, and is refused, whatever the body says.
    assert dees.post(f"/products/{sku}/ratings", json={"stars": 1}).status_code == 403
    assert (
        dees.post(f"/products/{sku}/ratings", json={"customer_id": cyd, "stars": 1}).status_code
        == 403
    )

    mine = cyds.post(f"/products/{sku}/ratings", json={"stars": 4})
    assert mine.status_code == 201, mine.text
    assert (mine.json()["customer_id"], mine.json()["outcome"]) == (cyd, "created")
    rating_of(anonymous, sku, (4.0, 1))  # the search is public

    # The operator names the customer; not naming one is a 422 naming the field.
    unnamed = operator.post(f"/products/{sku}/ratings", json={"stars": 2})
    assert unnamed.status_code == 422 and unnamed.json()["detail"][0]["loc"] == [
        "body",
        "customer_id",
    ]
    for_cyd = operator.post(f"/products/{sku}/ratings", json={"customer_id": cyd, "stars": 2})
    assert (for_cyd.status_code, for_cyd.json()["outcome"]) == (200, "changed")
    rating_of(anonymous, sku, (2.0, 1))
