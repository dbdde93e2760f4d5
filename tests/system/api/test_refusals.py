"""Another customer's order is refused exactly as an unknown one: the same answer, after the same
lookups. The lookups are counted on the API's own objects (its event store and its sagas),
wrapped in an API served in this process over real HTTP, on the dev stack's Temporal, worker
and databases, with customer tokens required. (How long an answer takes is not asserted: it
would be flaky; the same lookups are what makes the time the same.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn

from api.deps import AppState
from api.main import create_app
from api.tokens import mint
from cloudmart.settings import Settings
from devstack.processes import free_port
from tests.support import api_process
from tests.system.api.test_api import UNKNOWN, order_body, place, wait_for

ALICE, BOB = "refusals-alice", "refusals-bob"


@dataclass
class InProcessApi:
    url: str
    state: AppState
    settings: Settings

    def client(self, customer_id: str) -> httpx.Client:
        assert self.settings.auth_secret is not None
        token = mint(customer_id, self.settings.auth_secret.get_secret_value())
        return httpx.Client(
            base_url=self.url, timeout=15, headers={"Authorization": f"Bearer {token}"}
        )


@pytest.fixture(scope="module")
def in_process(auth_settings: Settings) -> Iterator[InProcessApi]:
    """``create_app`` under uvicorn in a thread of this process: real HTTP, and its state at
    hand."""
    settings = auth_settings.model_copy(update={"api_port": free_port()})
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=settings.api_port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.02)
    try:
        yield InProcessApi(f"http://127.0.0.1:{settings.api_port}", app.state.cloudmart, settings)
    finally:
        server.should_exit = True
        thread.join(15)


@dataclass
class Lookups:
    """The calls made on the spied methods, by name, in the order they were made."""

    calls: list[str] = field(default_factory=list)

    def spy(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return method(*args, **kwargs)

        return counted

    def during(self, request: Callable[[], httpx.Response]) -> tuple[httpx.Response, list[str]]:
        self.calls.clear()
        response = request()
        return response, sorted(self.calls)  # the order two concurrent lookups start may vary


@pytest.fixture
def lookups(in_process: InProcessApi, monkeypatch: pytest.MonkeyPatch) -> Lookups:
    spied = Lookups()
    state = in_process.state
    monkeypatch.setattr(state.events, "stream", spied.spy("events.stream", state.events.stream))
    monkeypatch.setattr(state.sagas, "owner", spied.spy("sagas.owner", state.sagas.owner))
    return spied


@pytest.fixture(scope="module")
def alices_ended_order(in_process: InProcessApi) -> str:
    """Ended, so its whole story is in the event store."""
    with in_process.client(ALICE) as alice:
        order_id = place(alice, order_body(customer=ALICE))
        wait_for(alice, order_id)
        assert alice.get(f"/orders/{order_id}/events").json()[-1]["event_type"] == "OrderCompleted"
    return order_id


def test_another_customers_stored_order_costs_what_an_unknown_one_does(
    in_process: InProcessApi, lookups: Lookups, alices_ended_order: str
) -> None:
    with in_process.client(BOB) as bob, in_process.client(ALICE) as alice:
        theirs, theirs_lookups = lookups.during(
            lambda: bob.get(f"/orders/{alices_ended_order}/events")
        )
        unknown, unknown_lookups = lookups.during(lambda: bob.get(f"/orders/{UNKNOWN}/events"))
        mine, mine_lookups = lookups.during(
            lambda: alice.get(f"/orders/{alices_ended_order}/events")
        )
    assert (theirs.status_code, unknown.status_code, mine.status_code) == (404, 404, 200)
    assert theirs.json() == {"detail": f"order {alices_ended_order} not found"}
    assert unknown.json() == {"detail": f"order {UNKNOWN} not found"}
    assert theirs.headers["content-length"] == unknown.headers["content-length"]
    # Each asks the store and the saga once, whoever's order it is and whether it exists.
    assert theirs_lookups == unknown_lookups == mine_lookups == ["events.stream", "sagas.owner"]


def test_a_stored_timeline_is_answered_while_temporal_is_down(
    auth_settings: Settings, alices_ended_order: str
) -> None:
    """Asking the saga every time must not make a stored timeline depend on Temporal: the
    event store names the customer. With nothing stored, Temporal's silence is a 503."""
    settings = auth_settings.model_copy(
        update={"api_port": free_port(), "temporal_address": f"127.0.0.1:{free_port()}"}
    )
    assert settings.auth_secret is not None
    token = mint(ALICE, settings.auth_secret.get_secret_value())
    with api_process(settings) as api:
        headers = {"Authorization": f"Bearer {token}"}
        stored = api.get(f"/orders/{alices_ended_order}/events", headers=headers)
        assert stored.status_code == 200, stored.text
        assert stored.json()[0]["data"]["customer_id"] == ALICE
        unknown = api.get(f"/orders/{UNKNOWN}/events", headers=headers)
        assert unknown.status_code == 503
        assert unknown.json()["detail"].startswith("Temporal is unreachable at ")
