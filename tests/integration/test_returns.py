"""The return saga, choreographed (docs/returns.md), through the real application in this
process and the services' own return consumers, on the real databases (SQLite and PostgreSQL):
an accepted return is restocked, refunded and its points revoked, each service reacting to the
one before with correlation and causation; a rejected one goes back with nothing refunded; a
refund refused for good is compensated by inventory and left stuck for an operator; the
request's rules, two racing requests, and a stuck consumer's reason, dead letter and retry."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta

import httpx
import pytest
from sqlmodel import Session, select

from cloudmart.contracts.events import CURRENT_VERSION, Event, EventType, event_id
from cloudmart.contracts.orders import OrderItem
from cloudmart.contracts.returns import CONSUMERS, returns_stream
from cloudmart.settings import Settings
from services.activity.actions import Recorded
from services.activity.models import ActivityType
from services.choreography.consumer import Consumer
from services.database import utcnow
from services.factory import Services, build_activity, open_services, prepare
from services.inventory.models import Product
from services.payment.provider import SimulatedProvider
from services.readmodel.models import OrderSummary
from tests.integration.test_activity_tracking import api, api_settings, as_customer, timeline
from tests.unit.api_stub import OPERATOR_TOKEN

OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
ITEMS = [OrderItem(sku="SKU-A", quantity=2), OrderItem(sku="SKU-B", quantity=1)]
"""2 x 1000 + 1 x 2500 cents: 4500, and 45 loyalty points."""
HAPPY = [
    "ReturnRequested",
    "ReturnShipmentCreated",
    "ReturnAccepted",
    "StockRestocked",
    "ReturnRefunded",
    "PointsRevoked",
]


@pytest.fixture
def consumers(settings: Settings, services: Services) -> Iterator[Services]:
    hosted = open_services(settings, CONSUMERS)
    for consumer in hosted.consumers:
        prepare(consumer, settings)
    yield hosted
    hosted.dispose()


@pytest.fixture
async def http(settings: Settings, services: Services) -> AsyncIterator[httpx.AsyncClient]:
    async with api(api_settings(settings, choreography_attempts=3)) as client:
        yield client


def complete_order(
    services: Services,
    customer: str = "c-1",
    token: str = "tok_ok",
    completed_at: datetime | None = None,
) -> str:
    """An order the saga completed: reserved, charged, committed, and its events stored."""
    assert services.inventory and services.payment and services.event_store
    order_id = str(uuid.uuid4())
    reservation = services.inventory.reserve(order_id, ITEMS)
    services.payment.charge(order_id, customer, token, reservation.total_cents)
    services.inventory.commit(order_id)
    at = completed_at or utcnow()
    lines = [line.model_dump() for line in reservation.lines]
    kinds = [
        (
            EventType.ORDER_PLACED,
            {"customer_id": customer, "items": [i.model_dump() for i in ITEMS], "country": "DE"},
        ),
        (EventType.INVENTORY_RESERVED, {"lines": lines, "total_cents": reservation.total_cents}),
        (EventType.PAYMENT_CHARGED, {"amount_cents": reservation.total_cents}),
        (EventType.INVENTORY_COMMITTED, {"lines": lines}),
        (EventType.ORDER_COMPLETED, {"total_cents": reservation.total_cents}),
    ]
    services.event_store.append(
        [
            Event(
                event_id=event_id(order_id, sequence),
                aggregate_id=order_id,
                sequence=sequence,
                event_type=kind,
                data=data,
                version=CURRENT_VERSION[kind],
                occurred_at=at,
                user_id=customer,
            )
            for sequence, (kind, data) in enumerate(kinds, 1)
        ]
    )
    return order_id


def settle(services: Services, consumers: Services) -> None:
    """Run every follower of the store until none has anything left to do."""
    assert services.loyalty and services.projector
    for _ in range(10):
        services.loyalty.catch_up()
        moved = sum(consumer.catch_up() for consumer in consumers.consumers)
        services.projector.catch_up()
        if not moved:
            return


async def request(
    http: httpx.AsyncClient,
    order_id: str,
    lines: dict[str, int],
    customer: str = "c-1",
    key: str | None = None,
) -> httpx.Response:
    body = {"lines": [{"sku": sku, "quantity": q} for sku, q in lines.items()]}
    headers = as_customer(customer) | ({"Idempotency-Key": key} if key else {})
    return await http.post(f"/orders/{order_id}/returns", json=body, headers=headers)


def requested(services: Services, order_id: str) -> list[str]:
    """The return ids the order's returns stream holds a request for, in order."""
    assert services.event_store
    stream = services.event_store.stream(returns_stream(order_id))
    return [e.data["return_id"] for e in stream if e.event_type == "ReturnRequested"]


async def inspect(http: httpx.AsyncClient, return_id: str, accepted: bool) -> httpx.Response:
    body = {"accepted": accepted, "note": "as described" if accepted else "worn"}
    return await http.post(f"/returns/{return_id}/inspection", json=body, headers=OPERATOR)


async def view(http: httpx.AsyncClient, return_id: str) -> dict:
    response = await http.get(f"/returns/{return_id}", headers=as_customer("c-1"))
    assert response.status_code == 200, response.text
    return response.json()


def stock(services: Services) -> dict[str, tuple[int, int]]:
    """Per sku, units on hand and units sold."""
    assert services.inventory
    with Session(services.inventory.engine) as session:
        return {p.sku: (p.stock_on_hand, p.sold) for p in session.exec(select(Product))}


def refunded(services: Services) -> int:
    assert services.payment and isinstance(services.payment.provider, SimulatedProvider)
    return services.payment.provider.ledger().refunded_cents


def order_status(services: Services, order_id: str) -> str:
    assert services.projector
    with Session(services.projector.engine) as session:
        summary = session.get(OrderSummary, order_id)
        assert summary is not None
        return summary.status


def points(services: Services) -> int:
    assert services.loyalty
    return services.loyalty.account("c-1").points


async def test_an_accepted_return_is_restocked_refunded_and_its_points_revoked_in_a_chain(
    http: httpx.AsyncClient, services: Services, consumers: Services
) -> None:
    order_id = complete_order(services)
    settle(services, consumers)
    assert points(services) == 45
    before = stock(services)
    response = await request(http, order_id, {"SKU-A": 1})
    assert response.status_code == 201, response.text
    return_id = response.json()["return_id"]
    assert response.headers["location"] == f"/returns/{return_id}"
    assert (response.json()["amount_cents"], response.json()["status"]) == (1000, "REQUESTED")
    waiting = (await view(http, return_id))["waiting"]
    assert waiting["service"] == "shipping" and "has not read that far" in waiting["reason"]

    settle(services, consumers)
    labelled = await view(http, return_id)
    assert labelled["status"] == "AWAITING_INSPECTION"
    assert labelled["chain"][1]["data"]["label"].startswith("RL")
    assert (await inspect(http, return_id, accepted=True)).status_code == 202
    settle(services, consumers)

    returned = await view(http, return_id)
    assert returned["status"] == "RETURNED" and returned["waiting"] is None
    chain = returned["chain"]
    assert [link["event_type"] for link in chain] == HAPPY
    assert [link["service"] for link in chain] == [
        "api",
        "shipping",
        "warehouse",
        "inventory",
        "payment",
        "loyalty",
    ]
    assert {link["correlation_id"] for link in chain} == {return_id}
    assert [link["causation_id"] for link in chain] == [None] + [
        link["event_id"] for link in chain[:-1]
    ]
    assert stock(services)["SKU-A"] == (before["SKU-A"][0] + 1, before["SKU-A"][1] - 1)
    assert refunded(services) == 1000 and points(services) == 35
    assert order_status(services, order_id) == "PARTIALLY_RETURNED"

    # The rest: the order's refunds add up to its charge, never more.
    rest = await request(http, order_id, {"SKU-A": 1, "SKU-B": 1})
    assert rest.status_code == 201, rest.text
    settle(services, consumers)
    assert (await inspect(http, rest.json()["return_id"], accepted=True)).status_code == 202
    settle(services, consumers)
    assert (await view(http, rest.json()["return_id"]))["status"] == "RETURNED"
    assert refunded(services) == 4500 and points(services) == 0
    assert order_status(services, order_id) == "RETURNED"
    assert stock(services) == {
        **before,
        "SKU-A": (before["SKU-A"][0] + 2, before["SKU-A"][1] - 2),
        "SKU-B": (before["SKU-B"][0] + 1, before["SKU-B"][1] - 1),
    }
    again = await request(http, order_id, {"SKU-B": 1})
    assert again.status_code == 422
    assert again.json()["detail"][0]["loc"] == ["body", "lines", 0, "quantity"]


async def test_a_rejected_return_goes_back_and_nothing_is_refunded_or_restocked(
    http: httpx.AsyncClient, services: Services, consumers: Services
) -> None:
    order_id = complete_order(services)
    settle(services, consumers)
    before = stock(services)
    return_id = (await request(http, order_id, {"SKU-B": 1})).json()["return_id"]
    settle(services, consumers)
    assert (await inspect(http, return_id, accepted=False)).status_code == 202
    settle(services, consumers)
    rejected = await view(http, return_id)
    assert rejected["status"] == "REJECTED" and not rejected["stuck"]
    assert [link["event_type"] for link in rejected["chain"]] == [
        "ReturnRequested",
        "ReturnShipmentCreated",
        "ReturnRejected",
        "ReturnParcelSentBack",
    ]
    assert rejected["chain"][-1]["data"]["tracking_number"].startswith("CM")
    assert stock(services) == before and refunded(services) == 0 and points(services) == 45
    assert order_status(services, order_id) == "COMPLETED"
    # A rejected return takes nothing back: its lines may be returned again.
    assert (await request(http, order_id, {"SKU-B": 1})).status_code == 201


async def test_a_refund_refused_for_good_is_unrestocked_and_left_stuck_for_an_operator(
    http: httpx.AsyncClient, services: Services, consumers: Services
) -> None:
    order_id = complete_order(services, token="tok_norefund")
    settle(services, consumers)
    before = stock(services)
    return_id = (await request(http, order_id, {"SKU-A": 2})).json()["return_id"]
    settle(services, consumers)
    await inspect(http, return_id, accepted=True)
    settle(services, consumers)
    stuck = await view(http, return_id)
    assert [link["event_type"] for link in stuck["chain"]] == [
        "ReturnRequested",
        "ReturnShipmentCreated",
        "ReturnAccepted",
        "StockRestocked",
        "ReturnRefundRefused",
        "StockUnrestocked",
    ]
    assert (stuck["status"], stuck["stuck"]) == ("REFUND_REFUSED", True)
    assert stuck["waiting"]["service"] == "operator"
    assert "refuses refunds" in stuck["chain"][4]["data"]["reason"]
    assert stock(services) == before and refunded(services) == 0 and points(services) == 45


async def test_a_return_is_refused_naming_what_is_wrong(
    http: httpx.AsyncClient, services: Services, consumers: Services
) -> None:
    order_id = complete_order(services)
    too_many = await request(http, order_id, {"SKU-A": 3})
    assert too_many.status_code == 422
    [error] = too_many.json()["detail"]
    assert error["loc"] == ["body", "lines", 0, "quantity"] and "at most 2" in error["msg"]
    unknown = await request(http, order_id, {"SKU-B": 1, "RACE-10": 1})
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "lines", 1, "sku"]
    assert (await request(http, order_id, {"SKU-A": 1}, customer="c-2")).status_code == 404
    assert (await request(http, str(uuid.uuid4()), {"SKU-A": 1})).status_code == 404
    late = complete_order(services, completed_at=utcnow() - timedelta(days=31))
    past = await request(http, late, {"SKU-A": 1})
    assert past.status_code == 409 and "return window of 30 days" in past.json()["detail"]

    return_id = (await request(http, order_id, {"SKU-A": 1})).json()["return_id"]
    early = await inspect(http, return_id, accepted=True)
    assert early.status_code == 409 and "no return label" in early.json()["detail"]
    settle(services, consumers)
    by_customer = await http.post(
        f"/returns/{return_id}/inspection",
        json={"accepted": True, "note": "mine"},
        headers=as_customer("c-1"),
    )
    assert by_customer.status_code == 403
    assert (await inspect(http, return_id, accepted=True)).status_code == 202
    twice = await inspect(http, return_id, accepted=False)
    assert twice.status_code == 409 and "already inspected" in twice.json()["detail"]
    other = await http.get(f"/returns/{return_id}", headers=as_customer("c-2"))
    assert other.status_code == 404


async def test_two_racing_requests_never_return_more_than_was_bought(
    http: httpx.AsyncClient, services: Services
) -> None:
    order_id = complete_order(services)
    answers = await asyncio.gather(*(request(http, order_id, {"SKU-A": 2}) for _ in range(4)))
    assert sorted(a.status_code for a in answers) == [201, 422, 422, 422]


async def test_a_retried_request_with_its_key_answers_the_same_return_and_opens_no_other(
    http: httpx.AsyncClient, services: Services, consumers: Services, settings: Settings
) -> None:
    """The answer to a return request was lost; the client sends it again with its key. Both
    SKU-A are in the first return, so without the key the retry would be refused (none left)."""
    order_id = complete_order(services)
    first = await request(http, order_id, {"SKU-A": 2}, key="return-once")
    assert first.status_code == 201, first.text
    return_id = first.json()["return_id"]
    settle(services, consumers)
    again = await request(http, order_id, {"SKU-A": 2}, key="return-once")
    assert again.status_code == 201, again.text
    assert again.json() | {"status": "REQUESTED"} == first.json()
    assert again.json()["status"] == "AWAITING_INSPECTION"  # as it stands now
    assert again.headers["Location"] == f"/returns/{return_id}"
    assert requested(services, order_id) == [return_id]
    # The customer's timeline records the return once, under the order.
    returned = [e for e in await timeline(http, "c-1") if e["type"] == "order_returned"]
    assert [(e["subject"], e["data"]) for e in returned] == [
        (order_id, {"return_id": return_id, "lines": [{"sku": "SKU-A", "quantity": 2}]})
    ]

    changed = await request(http, order_id, {"SKU-A": 1}, key="return-once")
    assert changed.status_code == 422
    [error] = changed.json()["detail"]
    assert error["loc"] == ["header", "Idempotency-Key"] and error["type"] == "idempotency_conflict"
    spaced = await request(http, order_id, {"SKU-A": 2}, key="has a space")
    assert spaced.status_code == 422
    assert spaced.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    unkeyed = await request(http, order_id, {"SKU-A": 2})
    assert unkeyed.status_code == 422  # a request without the key is a new one: none left
    other_line = await request(http, order_id, {"SKU-B": 1}, key="another-key")
    assert other_line.status_code == 201
    assert requested(services, order_id) == [return_id, other_line.json()["return_id"]]
    # The key names a return of this order only: on another order it opens that order's.
    elsewhere = complete_order(services)
    there = await request(http, elsewhere, {"SKU-A": 2}, key="return-once")
    assert there.status_code == 201 and there.json()["return_id"] != return_id
    assert (
        await request(http, elsewhere, {"SKU-A": 1}, customer="c-2", key="return-once")
    ).status_code == 404
    # An operator's return on the customer's behalf is the audit log's, not the timeline's
    # (though the order is known to be the customer's there).
    store = build_activity(settings)
    placed = Recorded(
        customer_id="c-1",
        type=ActivityType.ORDER_PLACED,
        subject=elsewhere,
        occurred_at=utcnow(),
        request_id="req-placed",
        key=f"natural:{elsewhere}",
    )
    assert store.record([placed]) == 1
    store.engine.dispose()
    body = {"lines": [{"sku": "SKU-B", "quantity": 1}]}
    by_operator = await http.post(f"/orders/{elsewhere}/returns", json=body, headers=OPERATOR)
    assert by_operator.status_code == 201, by_operator.text
    timelined = {
        e["data"]["return_id"] for e in await timeline(http, "c-1") if e["type"] == "order_returned"
    }
    assert there.json()["return_id"] in timelined
    assert by_operator.json()["return_id"] not in timelined


async def test_racing_retries_with_one_key_open_one_return(
    http: httpx.AsyncClient, services: Services
) -> None:
    order_id = complete_order(services)
    answers = await asyncio.gather(
        *(request(http, order_id, {"SKU-A": 1}, key="raced") for _ in range(4))
    )
    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
    [return_id] = {a.json()["return_id"] for a in answers}
    assert requested(services, order_id) == [return_id]


async def test_a_parked_event_shows_why_the_return_is_stuck_and_an_operator_retry_frees_it(
    http: httpx.AsyncClient,
    services: Services,
    consumers: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order_id = complete_order(services)
    settle(services, consumers)
    return_id = (await request(http, order_id, {"SKU-A": 1})).json()["return_id"]
    shipping = consumers.shipping_returns
    assert isinstance(shipping, Consumer)
    shipping.max_attempts = 3

    def label_printer_down(*_: object) -> None:
        raise ConnectionError("the label printer is down")

    monkeypatch.setattr(shipping.handler, "handle", label_printer_down)
    shipping.run_once()
    failing = (await view(http, return_id))["waiting"]
    assert (failing["attempts"], failing["parked"]) == (1, False)
    assert "keeps failing" in failing["reason"]
    for _ in range(2):
        shipping.run_once()
    stuck = await view(http, return_id)
    assert stuck["stuck"] and stuck["waiting"]["parked"]
    assert "the label printer is down" in stuck["waiting"]["reason"]

    listed = await http.get("/choreography/dead-letters", headers=OPERATOR)
    assert listed.status_code == 200
    [parked] = listed.json()
    assert (parked["consumer"], parked["correlation_id"]) == ("shipping-returns", return_id)
    assert (
        await http.get("/choreography/dead-letters", headers=as_customer("c-1"))
    ).status_code == 403
    path = f"/choreography/dead-letters/shipping-returns/{parked['event_id']}"
    monkeypatch.undo()
    retried = await http.post(f"{path}/retry", headers=OPERATOR)
    assert retried.status_code == 202 and retried.json()["resolution"] == "retry"
    assert (await http.post(f"{path}/skip", headers=OPERATOR)).status_code == 404
    settle(services, consumers)
    assert (await view(http, return_id))["status"] == "AWAITING_INSPECTION"
    assert (await http.get("/choreography/dead-letters", headers=OPERATOR)).json() == []
    audit = await http.get("/audit", headers=OPERATOR)
    actions = [entry["action"] for entry in audit.json()["entries"]]
    assert "POST /choreography/dead-letters/{consumer}/{event_id}/retry" in actions
