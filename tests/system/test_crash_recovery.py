"""Sagas survive crashes: the worker and the Temporal server are killed mid-saga (SIGKILL) and
restarted on the same state; every saga still ends, and every unit and cent is accounted for."""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from chaos.run import wait_until_closed
from cloudmart.contracts.orders import OrderState
from cloudmart.settings import DATABASES
from devstack.stack import DevStack, settings_env, throwaway_settings
from services.database import create_db_engine
from services.event_store.aggregate import replay
from services.event_store.store import EventStore
from services.inventory.catalog import DEMO_CATALOG
from services.reconcile import reconcile
from tests.support import operator_headers
from tests.system.api.test_api import TERMINAL, order_body


def place_mixed_orders(
    api: httpx.Client, count: int, prefix: str
) -> tuple[list[str], list[dict[str, Any]]]:
    rng = random.Random(prefix)
    order_ids, bodies = [], []
    for n in range(count):
        token = rng.choice(["tok_ok", "tok_ok", "tok_flaky", "tok_decline", "tok_review"])
        sku = rng.choice(["KB-MECH-01", "CAM-VINTAGE-01", "LAMP-LED-01", "NO-SUCH-SKU"])
        country = "JP" if n % 9 == 0 else "NL"
        body = order_body(items=[(sku, rng.randint(1, 3))], token=token, country=country)
        response = api.post("/orders", json=body, headers={"Idempotency-Key": f"{prefix}-{n}"})
        assert response.status_code == 202, response.text
        order_ids.append(response.json()["order_id"])
        bodies.append(body)
    return order_ids, bodies


def status_of(api: httpx.Client, order_id: str) -> dict[str, Any] | None:
    """The order's state, or None while the stack recovers (a 503 naming what is down)."""
    response = api.get(f"/orders/{order_id}")
    if response.status_code == 503:
        assert "is the worker running?" in response.json()["detail"]
        return None
    assert response.status_code == 200, response.text
    return response.json()


def settle_reviews(api: httpx.Client, states: list[dict[str, Any] | None]) -> None:
    """Decide the payments held for review: the n-th order is cancelled, approved or rejected."""
    for n, state in enumerate(states):
        if state and state["status"] == "AWAITING_PAYMENT_REVIEW":
            order_id = state["order_id"]
            if n % 3 == 0:
                api.post(f"/orders/{order_id}/cancel")
            else:
                api.post(f"/orders/{order_id}/payment-review", json={"approved": n % 3 == 1})


def states_when_all_ended(
    api: httpx.Client, order_ids: list[str], timeout: float
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        states = [status_of(api, order_id) for order_id in order_ids]
        pending = [s for s in states if s is None or s["status"] not in TERMINAL]
        if not pending:
            return [s for s in states if s is not None]
        assert time.monotonic() < deadline, f"{len(pending)} sagas never ended: {pending[:2]}"
        settle_reviews(api, states)
        time.sleep(0.1)


def test_sagas_end_and_books_balance_after_worker_and_server_crashes(tmp_path: Path) -> None:
    settings = throwaway_settings(tmp_path, task_queue_prefix=f"crash-{uuid.uuid4().hex[:6]}")
    stack = DevStack(settings, settings_env(settings), output=None, persist=True)
    stack.start()
    try:
        # As the operator: the payment reviews are operator actions.
        headers = operator_headers(settings)
        with httpx.Client(base_url=stack.api_url, timeout=30, headers=headers) as api:
            order_ids, bodies = place_mixed_orders(api, 24, "before")
            assert stack.kill("worker") == -9  # mid-saga: activities and workflow tasks in flight
            queued, _ = place_mixed_orders(api, 8, "no-worker")  # accepted, wait for a worker
            stack.start_process("worker")
            assert stack.kill("temporal") == -9
            stack.start_process("temporal")  # on the same database file
            order_ids += queued
            states = states_when_all_ended(api, order_ids, timeout=120)
            # A saga reports its outcome before it stores its last events: wait for its end.
            assert wait_until_closed(settings, time.monotonic() + 60) == 0
            # A client retrying after the crashes gets its order back, not a second one.
            retried = api.post("/orders", json=bodies[0], headers={"Idempotency-Key": "before-0"})
            assert retried.json()["order_id"] == order_ids[0]
    finally:
        stopped = stack.stop()
    assert stopped == {"api": 0, "worker": 0, "worker-subscribers": 0, "temporal": 0}

    engines = {name: create_db_engine(settings.db_url(name), pool_size=1) for name in DATABASES}
    books, problems = reconcile(
        [OrderState.model_validate(s) for s in states],
        inventory=engines["inventory"],
        payment=engines["payment"],
        shipping=engines["shipping"],
        provider=engines["payment_provider"],  # what the provider really charged
        initial_stock={p.sku: p.stock for p in DEMO_CATALOG},
    )
    assert problems == []
    assert set(books.orders) >= {"COMPLETED", "FAILED"}

    # The event store kept each order's story exactly once through both crashes: one event per
    # step of its outcome (none repeated by a retried or replayed append), ending with it; and
    # the order's fold agrees with its saga.
    store = EventStore(engines["event_store"])
    for state in states:
        story = store.stream(state["order_id"])
        types = [e.event_type for e in story]
        assert len(types) == len(set(types)), (state["order_id"], types)
        assert [e.sequence for e in story] == list(range(1, len(story) + 1))
        assert types[-1] == f"Order{state['status'].title()}", types
        assert replay(state["order_id"], story).status == state["status"]
    assert books.charged_cents > books.refunded_cents > 0
