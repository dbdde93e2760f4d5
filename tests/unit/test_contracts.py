"""The contract between the API, the saga and the activities: what an order may say, and the
activities' names, each the one place the workflow and the workers agree on."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cloudmart.contracts.activities import ALL_ACTIVITIES
from cloudmart.contracts.orders import MAX_LINE_QUANTITY, MAX_ORDER_LINES, PlaceOrder
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
