"""``GET /orders/{id}?wait=`` and ``POST /orders?wait=``: one request that answers when the saga
ends, over real HTTP against the real dev stack (and, where a test must know that a request has
begun to wait, a real uvicorn serving the app in this process: on the stack's Temporal, or with a
saga that never ends)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Awaitable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from api.deps import get_sagas, get_state
from api.main import create_app
from cloudmart.contracts.orders import OrderAccepted, OrderState, OrderStatus
from cloudmart.settings import Settings
from devstack.processes import free_port
from devstack.stack import DevStack, throwaway_settings
from tests.system.api.test_api import UNKNOWN, order_body, place, wait_for


class Counted:
    """An HTTP client to the stack's API that counts the requests for each path."""

    def __init__(self, base_url: str) -> None:
        self.requests: dict[str, int] = {}
        self.client = httpx.Client(
            base_url=base_url, timeout=45, event_hooks={"request": [self._count]}
        )

    def _count(self, request: httpx.Request) -> None:
        self.requests[request.url.path] = self.requests.get(request.url.path, 0) + 1


@pytest.fixture
def api(dev_stack: DevStack) -> Iterator[Counted]:
    counted = Counted(dev_stack.api_url)
    with counted.client:
        yield counted


def timed_get(api: Counted, path: str, **params: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = api.client.get(path, params=params)
    return response, time.monotonic() - started


def test_one_request_waits_for_a_completed_order(api: Counted) -> None:
    order_id = place(api.client, order_body(token="tok_ok"))
    response, _ = timed_get(api, f"/orders/{order_id}", wait=30)
    assert response.status_code == 200, response.text
    state = response.json()
    assert state["status"] == "COMPLETED"
    assert state["tracking_number"] and state["failure"] is None
    assert api.requests[f"/orders/{order_id}"] == 1
    # The final state the wait answers is the one the saga reports when asked.
    assert api.client.get(f"/orders/{order_id}").json() == state


def test_an_ended_order_answers_at_once(api: Counted) -> None:
    order_id = place(api.client, order_body(token="tok_ok"))
    ended = wait_for(api.client, order_id)
    response, elapsed = timed_get(api, f"/orders/{order_id}", wait=30)
    assert response.json() == ended
    assert elapsed < 3


def test_a_declined_order_answers_failed_with_its_failure(api: Counted) -> None:
    order_id = place(api.client, order_body(token="tok_decline"))
    response, _ = timed_get(api, f"/orders/{order_id}", wait=30)
    assert response.status_code == 200, response.text
    state = response.json()
    assert state["status"] == "FAILED"
    assert state["failure"] == {
        "type": "PaymentDeclined",
        "message": "payment declined: card declined by the issuer",
    }
    assert [c["name"] for c in state["compensations"]] == ["payment.refund", "inventory.release"]
    assert api.requests[f"/orders/{order_id}"] == 1


def test_a_review_hold_is_not_an_end_the_wait_answers_the_current_state(api: Counted) -> None:
    order_id = place(api.client, order_body(token="tok_review"))
    wait_for(api.client, order_id, {"AWAITING_PAYMENT_REVIEW"})
    response, elapsed = timed_get(api, f"/orders/{order_id}", wait=1)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "AWAITING_PAYMENT_REVIEW"
    assert 1 <= elapsed < 4
    api.client.post(f"/orders/{order_id}/cancel")  # leave no saga waiting for a day


def test_a_wait_answers_as_soon_as_the_order_ends(
    api: Counted, observed_api: tuple[str, threading.Event]
) -> None:
    """Not at the end of the wait: a review order cancelled mid-wait answers CANCELLED."""
    url, began_waiting = observed_api
    order_id = place(api.client, order_body(token="tok_review"))
    wait_for(api.client, order_id, {"AWAITING_PAYMENT_REVIEW"})
    waiter = Counted(url)
    with waiter.client, ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(timed_get, waiter, f"/orders/{order_id}", wait=30)
        assert began_waiting.wait(10), "the API never began to wait for the order's end"
        assert not waiting.done()
        cancelled = api.client.post(f"/orders/{order_id}/cancel", json={"reason": "too slow"})
        assert cancelled.status_code == 202, cancelled.text
        response, elapsed = waiting.result()
    state = response.json()
    assert (state["status"], state["cancel_reason"]) == ("CANCELLED", "too slow")
    assert elapsed < 10


@pytest.mark.parametrize("wait", ["61", "-1", "abc", "nan", "inf"])
def test_a_wait_out_of_range_or_not_a_number_is_422_naming_it(api: Counted, wait: str) -> None:
    response = api.client.get(f"/orders/{UNKNOWN}", params={"wait": wait})
    assert response.status_code == 422, response.text
    assert ["query", "wait"] in [error["loc"] for error in response.json()["detail"]]


def test_an_unknown_order_is_404_at_once_whatever_the_wait(api: Counted) -> None:
    response, elapsed = timed_get(api, f"/orders/{UNKNOWN}", wait=30)
    assert response.status_code == 404
    assert response.json() == {"detail": f"order {UNKNOWN} not found"}
    assert elapsed < 3


def test_the_wait_is_in_the_schema(api: Counted) -> None:
    operation = api.client.get("/openapi.json").json()["paths"]["/orders/{order_id}"]["get"]
    [wait] = [p for p in operation["parameters"] if p["name"] == "wait"]
    assert wait["in"] == "query" and not wait.get("required", False)
    assert (wait["schema"]["minimum"], wait["schema"]["maximum"]) == (0, 60)
    assert "not for a review hold" in operation["description"]


# --- POST /orders?wait= ------------------------------------------------------------------------


def place_and_wait(
    api: Counted, body: dict[str, Any], wait: float, key: str | None = None
) -> dict[str, Any]:
    headers = {"Idempotency-Key": key} if key else {}
    response = api.client.post("/orders", json=body, params={"wait": wait}, headers=headers)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert response.headers["Location"] == f"/orders/{accepted['order_id']}"
    return accepted


def test_placing_with_a_wait_answers_the_completed_order_in_one_request(api: Counted) -> None:
    accepted = place_and_wait(api, order_body(token="tok_ok"), wait=30)
    state = accepted["state"]
    assert accepted["status"] == state["status"] == "COMPLETED"
    assert state["order_id"] == accepted["order_id"] and state["tracking_number"]
    assert api.requests == {"/orders": 1}
    assert api.client.get(f"/orders/{accepted['order_id']}").json() == state


def test_placing_with_a_wait_answers_a_decline_with_its_compensations(api: Counted) -> None:
    accepted = place_and_wait(api, order_body(token="tok_decline"), wait=30)
    state = accepted["state"]
    assert accepted["status"] == state["status"] == "FAILED"
    assert state["failure"]["type"] == "PaymentDeclined"
    assert [c["name"] for c in state["compensations"]] == ["payment.refund", "inventory.release"]


def test_placing_with_a_wait_answers_a_review_hold_as_the_current_state(api: Counted) -> None:
    started = time.monotonic()
    accepted = place_and_wait(api, order_body(token="tok_review"), wait=1)
    assert 1 <= time.monotonic() - started < 7
    assert accepted["status"] == accepted["state"]["status"] == "AWAITING_PAYMENT_REVIEW"
    api.client.post(f"/orders/{accepted['order_id']}/cancel")  # leave no saga waiting a day


def test_a_retry_with_the_same_key_waits_on_the_same_order(api: Counted) -> None:
    key, body = f"retry-{uuid.uuid4()}", order_body(token="tok_ok")
    first = place_and_wait(api, body, wait=30, key=key)
    again = place_and_wait(api, body, wait=30, key=key)
    assert again == first and first["status"] == "COMPLETED"


def test_placing_without_a_wait_answers_as_before(api: Counted) -> None:
    response = api.client.post("/orders", json=order_body(token="tok_ok"))
    assert response.status_code == 202
    assert response.json()["status"] == "PENDING" and response.json()["state"] is None


@pytest.mark.parametrize("wait", ["61", "-1", "abc", "nan"])
def test_a_bad_wait_places_no_order_and_is_422_naming_it(api: Counted, wait: str) -> None:
    customer = f"c-{uuid.uuid4().hex[:10]}"
    response = api.client.post("/orders", json=order_body(customer=customer), params={"wait": wait})
    assert response.status_code == 422, response.text
    assert ["query", "wait"] in [error["loc"] for error in response.json()["detail"]]
    listed = api.client.get("/orders", params={"customer_id": customer}).json()
    assert listed["items"] == []


def test_the_posts_wait_is_in_the_schema(api: Counted) -> None:
    schema = api.client.get("/openapi.json").json()
    operation = schema["paths"]["/orders"]["post"]
    [wait] = [p for p in operation["parameters"] if p["name"] == "wait"]
    assert (wait["schema"]["minimum"], wait["schema"]["maximum"]) == (0, 60)
    assert "state" in schema["components"]["schemas"]["OrderAccepted"]["properties"]


# --- a client that leaves mid-wait ------------------------------------------------------------


class EndlessSaga:
    """A saga that never ends, and notices when its wait is cancelled."""

    def __init__(self) -> None:
        self.waiting = threading.Event()
        self.cancelled = threading.Event()

    async def place(self, order: object, idempotency_key: str | None) -> OrderAccepted:
        return OrderAccepted(order_id=str(uuid.uuid4()), status=OrderStatus.PENDING)

    async def ended_state(self, order_id: str, wait: float) -> OrderState | None:
        return await self.final_state(order_id, wait)

    async def final_state(self, order_id: str, wait: float) -> OrderState:
        self.waiting.set()
        try:
            await asyncio.sleep(wait)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        raise AssertionError("the wait ran to its end after the client had left")


@contextmanager
def serving(app: FastAPI, port: int, lifespan: str) -> Iterator[str]:
    """``app`` under a real uvicorn, in a thread; its URL once it has started."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan=lifespan, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def observed_api(
    dev_stack: DevStack, stack_settings: Settings
) -> Iterator[tuple[str, threading.Event]]:
    """The app on the dev stack's Temporal and databases, and an event it sets when a request
    begins to wait for a saga's end."""
    settings = stack_settings.model_copy(update={"api_port": free_port()})
    app = create_app(settings)
    began_waiting = threading.Event()
    with serving(app, settings.api_port, lifespan="on") as url:
        sagas = app.state.cloudmart.sagas
        ended_state = sagas.ended_state

        async def observed(order_id: str, wait: float) -> OrderState | None:
            began_waiting.set()
            return await ended_state(order_id, wait)

        sagas.ended_state = observed
        yield url, began_waiting


@pytest.fixture
def endless_api(tmp_path: Path) -> Iterator[tuple[str, EndlessSaga]]:
    """The app under a real uvicorn (in a thread), its sagas replaced by an endless one."""
    settings = throwaway_settings(tmp_path, api_port=free_port())
    app = create_app(settings)
    saga = EndlessSaga()
    app.dependency_overrides[get_state] = lambda: SimpleNamespace(settings=settings)
    app.dependency_overrides[get_sagas] = lambda: saga
    with serving(app, settings.api_port, lifespan="off") as url:
        yield url, saga


async def leave_once_waiting(saga: EndlessSaga, request: Awaitable[httpx.Response]) -> None:
    """Send ``request`` and, once the app waits for the saga, leave (its connection closes)."""
    sent = asyncio.ensure_future(request)
    try:
        began = await asyncio.to_thread(saga.waiting.wait, 10)
        assert began, "the app never began to wait for the saga"
        assert not sent.done(), "answered while the saga had not ended"
    finally:
        sent.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sent


async def test_a_client_that_leaves_mid_wait_leaves_no_wait_behind(
    endless_api: tuple[str, EndlessSaga],
) -> None:
    url, saga = endless_api
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await leave_once_waiting(saga, client.get(f"/orders/{uuid.uuid4()}", params={"wait": 60}))
    assert await asyncio.to_thread(saga.cancelled.wait, 5), "the wait went on after its client left"


async def test_a_client_that_leaves_mid_wait_after_placing_leaves_no_wait_behind(
    endless_api: tuple[str, EndlessSaga],
) -> None:
    url, saga = endless_api
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await leave_once_waiting(
            saga, client.post("/orders", json=order_body(), params={"wait": 60})
        )
    assert await asyncio.to_thread(saga.cancelled.wait, 5), "the wait went on after its client left"
