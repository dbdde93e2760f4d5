"""The contract between the API, the saga and the activities: what an order may say, and the
activities' names, each the one place the workflow and the workers agree on."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from pydantic import ValidationError

from api.sagas import body_hash
from cloudmart.contracts.activities import ALL_ACTIVITIES
from cloudmart.contracts.customers import CloseAccount
from cloudmart.contracts.orders import (
    MAX_LINE_QUANTITY,
    MAX_ORDER_LINES,
    AbortOrder,
    CancelOrder,
    CancelUpdate,
    PaymentReviewDecision,
    PlaceOrder,
    ResolveCompensation,
    ResolveCompensationUpdate,
    ReviewPaymentUpdate,
    guest_customer_id,
    saga_input,
)
from cloudmart.contracts.routing import TaskQueues
from tests.support import place_order


def body(**changes: object) -> dict:
    return {**place_order().model_dump(), **changes}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"items": []}, "items"),
        ({"items": [{"sku": "SKU-A", "quantity": 0}]}, "quantity"),
        ({"items": [{"sku": "SKU-A", "quantity": MAX_LINE_QUANTITY + 1}]}, "quantity"),
        (
            {"items": [{"sku": f"SKU-{n}", "quantity": 1} for n in range(MAX_ORDER_LINES + 1)]},
            "items",
        ),
        ({"items": [{"sku": "SKU-A", "quantity": 1}, {"sku": "SKU-A", "quantity": 2}]}, "items"),
        ({"items": [{"sku": "SKU-A", "quantity": "2"}]}, "quantity"),  # strict: no coercion
        ({"total_cents": 1}, "total_cents"),  # amounts are never taken from the client
        ({"customer_id": "not an id"}, "customer_id"),
    ],
)
def test_an_order_that_breaks_a_rule_is_refused_naming_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        PlaceOrder.model_validate(body(**changes))
    assert any(field in map(str, error["loc"]) for error in refused.value.errors())


INVISIBLE = [
    *"\u202a\u202b\u202c\u202d\u202e",  # bidirectional embeddings and overrides
    *"\u2066\u2067\u2068\u2069",  # bidirectional isolates
    *"\u200e\u200f\u061c",  # directional marks
    *"\u200b\u200c\u200d\u2060\ufeff",  # zero-width and invisible
]
FREE_TEXT = [
    (PlaceOrder, ("shipping_address", "name")),
    (PlaceOrder, ("shipping_address", "line1")),
    (PlaceOrder, ("shipping_address", "line2")),
    (PlaceOrder, ("shipping_address", "city")),
    (CancelOrder, ("reason",)),
    (AbortOrder, ("reason",)),
    (ResolveCompensation, ("note",)),
    (CloseAccount, ("reason",)),
]
"""Every free-text field of the requests: the others are patterns of ASCII characters."""


def valid(model: type) -> dict:
    if model is PlaceOrder:
        return body()
    if model is ResolveCompensation:
        return {"step": "payment.refund", "note": "refunded by hand"}
    return {"reason": "changed my mind"}


@pytest.mark.parametrize("char", INVISIBLE, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize(
    ("model", "field"), FREE_TEXT, ids=lambda f: ".".join(f) if isinstance(f, tuple) else f.__name__
)
def test_bidirectional_controls_and_invisible_characters_are_refused_in_free_text(
    model: type, field: tuple[str, ...], char: str
) -> None:
    """A right-to-left override makes "Ada\u202eecilA" read as "AdaAlice"; a zero-width space
    makes two names that look the same differ."""
    data = valid(model)
    *parents, name = field
    target = data
    for parent in parents:
        target[parent] = dict(target[parent])
        target = target[parent]
    target[name] = f"Ada{char}Lovelace"
    with pytest.raises(ValidationError) as refused:
        model.model_validate(data)
    [error] = refused.value.errors()
    assert error["loc"] == field
    assert f"(found U+{ord(char):04X})" in error["msg"]


def test_right_to_left_scripts_and_accents_are_welcome() -> None:
    data = body()
    data["shipping_address"] = {
        **data["shipping_address"],
        "name": "محمد بن موسى الخوارزمي",
        "line1": "רחוב הרצל 1",
        "city": "Zoë-Ålund 李",
    }
    assert PlaceOrder.model_validate(data).shipping_address.name == "محمد بن موسى الخوارزمي"


def test_a_valid_order_is_accepted_as_sent() -> None:
    order = PlaceOrder.model_validate(body())
    assert order.model_dump() == body()


def test_every_activity_has_one_name_and_a_service_with_a_queue() -> None:
    names = [spec.name for spec in ALL_ACTIVITIES]
    assert len(names) == len(set(names))
    queues = TaskQueues.with_prefix("shop")
    for spec in ALL_ACTIVITIES:
        service = spec.name.split(".")[0]
        assert spec.service == service
        if service != "event_store":  # on the saga's own queue
            assert queues.for_service(service) == f"shop-{service}"


# --- a customer's order or a guest checkout ---------------------------------------------------

GUEST = {"name": "Grace Hopper", "email": "Grace@Example.com"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"customer_id": None}, "send customer_id (a customer's order) or guest"),
        ({"guest": GUEST}, "send customer_id or guest, not both"),
    ],
    ids=["neither", "both"],
)
def test_an_order_names_a_customer_or_a_guest_exactly(changes: dict, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        PlaceOrder.model_validate(body(**changes))
    [error] = refused.value.errors()
    assert error["loc"] == ("guest",) and message in error["msg"]


def test_a_guest_checkout_needs_no_customer_id_and_gets_one_from_the_order() -> None:
    order = PlaceOrder.model_validate(body(customer_id=None, guest=GUEST))
    assert order.guest is not None and order.guest.email == "grace@example.com"
    queues = TaskQueues.with_prefix("t")
    saga = saga_input("o-1", order, payment_review_timeout=timedelta(hours=1), task_queues=queues)
    assert saga.guest == order.guest
    # Derived from the order id: a retry of the same order names the same account, another
    # order another one; and it is a customer id like any other.
    assert saga.customer_id == guest_customer_id("o-1") != guest_customer_id("o-2")
    assert PlaceOrder.model_validate(body(customer_id=saga.customer_id)).customer_id
    named = saga_input(
        "o-1", place_order(), payment_review_timeout=timedelta(hours=1), task_queues=queues
    )
    assert (named.customer_id, named.guest) == ("c-42", None)


def test_a_bad_customer_id_is_the_only_error_not_also_a_missing_one() -> None:
    with pytest.raises(ValidationError) as refused:
        PlaceOrder.model_validate(body(customer_id="not an id"))
    assert [error["loc"] for error in refused.value.errors()] == [("customer_id",)]


def test_a_guests_email_is_checked() -> None:
    with pytest.raises(ValidationError) as refused:
        PlaceOrder.model_validate(body(customer_id=None, guest={**GUEST, "email": "nobody"}))
    assert refused.value.errors()[0]["loc"] == ("guest", "email")


def test_a_customers_order_hashes_as_before_guests_existed() -> None:
    """An Idempotency-Key retried across the upgrade finds its saga's memo unchanged."""
    before = (
        '{"customer_id":"c-42","items":[{"sku":"SKU-A","quantity":2}],"payment_token":"tok_ok",'
        '"shipping_address":{"name":"Ada Lovelace","line1":"Hauptstr. 1","line2":null,'
        '"city":"Berlin","postal_code":"10115","country":"DE"}}'
    )
    assert body_hash(place_order()) == hashlib.sha256(before.encode()).hexdigest()
    guest = PlaceOrder.model_validate(body(customer_id=None, guest=GUEST))
    assert body_hash(guest) != body_hash(place_order())


def test_the_updates_decode_what_was_sent_before_who_acted_was_recorded() -> None:
    """Updates in recorded histories carry the bodies alone; the bodies never take ``by``
    (the API fills it from the token)."""
    assert CancelUpdate.model_validate({"reason": "changed my mind"}).by is None
    assert ReviewPaymentUpdate.model_validate({"approved": True}).by is None
    resolution = {"step": "payment.refund", "note": "refunded by hand"}
    assert ResolveCompensationUpdate.model_validate(resolution).by is None
    assert ReviewPaymentUpdate(approved=False, by="alice").by == "alice"
    for model, data in (
        (CancelOrder, {"reason": "x"}),
        (PaymentReviewDecision, {"approved": True}),
        (ResolveCompensation, resolution),
    ):
        with pytest.raises(ValidationError):
            model.model_validate({**data, "by": "alice"})
