"""How the order saga is known to Temporal: its type, ids and search attributes."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from cloudmart.contracts.orders import OrderStatus

WORKFLOW_TYPE = "OrderSaga"
WORKFLOW_ID_PREFIX = "order-"

ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
SEARCH_ATTRIBUTES = (ORDER_STATUS, CUSTOMER_ID)
"""Registered on the server (``make up`` passes them to the dev server) before any saga runs."""


def workflow_id(order_id: str) -> str:
    return f"{WORKFLOW_ID_PREFIX}{order_id}"


def order_id_of(workflow_id: str) -> str:
    return workflow_id.removeprefix(WORKFLOW_ID_PREFIX)


def start_search_attributes(customer_id: str) -> TypedSearchAttributes:
    """What a saga starts with: whose order it is, and PENDING. A saga started with them moves
    OrderStatus only for statuses that last; one started without sets both first."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(CUSTOMER_ID, customer_id),
            SearchAttributePair(ORDER_STATUS, OrderStatus.PENDING.value),
        ]
    )
