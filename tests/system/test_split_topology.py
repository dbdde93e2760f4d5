"""The production topology on the dev server: one worker process per service. The payment worker
is killed (SIGKILL) under load; its sagas wait, then finish once it is back: no double charge,
no lost stock."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx

from cloudmart.contracts.orders import OrderState
from cloudmart.settings import DATABASES
from devstack.stack import DevStack, settings_env, throwaway_settings
from services.database import create_db_engine
from services.inventory.catalog import DEMO_CATALOG
from services.reconcile import reconcile
from tests.system.api.test_api import TERMINAL, order_body

STORED_BEFORE_PAYMENT = ("OrderPlaced", "CustomerChecked", "InventoryReserved")


def waiting_for(api: httpx.Client, order_id: str) -> tuple[str, tuple[str, ...]]:
    """The order's status, and the events the store has of it."""
    events = api.get(f"/orders/{order_id}/events").json()
    return api.get(f"/orders/{order_id}").json()["status"], tuple(e["event_type"] for e in events)


def test_sagas_wait_for_a_killed_payment_worker_and_finish_once_it_is_back(tmp_path: Path) -> None:
    settings = throwaway_settings(tmp_path, task_queue_prefix=f"split-{uuid.uuid4().hex[:6]}")
    stack = DevStack(settings, settings_env(settings), output=None, split=True)
    stack.start()
    try:
        assert sorted(stack.processes) == [
            "api",
            "temporal",
            "worker-customers",
            "worker-inventory",
            "worker-inventory-returns",
            "worker-loyalty",
            "worker-loyalty-returns",
            "worker-orchestrator",
            "worker-payment",
            "worker-payment-returns",
            "worker-projector",
            "worker-shipping",
            "worker-shipping-eraser",
            "worker-shipping-returns",
        ]
        with httpx.Client(base_url=stack.api_url, timeout=30) as api:
            skus = ["KB-MECH-01", "LAMP-LED-01", "HUB-USBC-7"]

            def place(count: int) -> list[str]:
                bodies = [order_body(items=[(skus[n % 3], 1)]) for n in range(count)]
                return [api.post("/orders", json=body).json()["order_id"] for body in bodies]

            order_ids = place(10)
            assert stack.kill("worker-payment") == -9  # mid-load
            while_down = place(10)
            # They wait for payment: each one's first attempt at the payment step runs out the
            # events window with no payment worker to take it, the saga stores its story so
            # far, and it waits on (none gives up: every order completes below).
            deadline = time.monotonic() + 30
            while True:
                waiting = {o: waiting_for(api, o) for o in while_down}
                if set(waiting.values()) == {("CHARGING_PAYMENT", STORED_BEFORE_PAYMENT)}:
                    break
                assert time.monotonic() < deadline, f"not all waiting for payment: {waiting}"
                time.sleep(0.1)
            order_ids += while_down
            stack.start_process("worker-payment")
            deadline = time.monotonic() + 60
            while True:
                states = [api.get(f"/orders/{o}").json() for o in order_ids]
                if all(s["status"] in TERMINAL for s in states):
                    break
                assert time.monotonic() < deadline, [s["status"] for s in states]
                time.sleep(0.1)
            # The projector's and loyalty's own processes follow the events to the same end.
            while True:
                listed = api.get("/orders", params={"status": "COMPLETED", "page_size": 100})
                points = api.get(f"/customers/{states[0]['customer_id']}/loyalty").json()
                if len(listed.json()["items"]) == 20 and points["points"] > 0:
                    break
                assert time.monotonic() < deadline, (listed.json(), points)
                time.sleep(0.1)
    finally:
        stopped = stack.stop()
    assert set(stopped.values()) == {0}, stopped

    assert [s["status"] for s in states] == ["COMPLETED"] * 20
    engines = {name: create_db_engine(settings.db_url(name), pool_size=1) for name in DATABASES}
    _, problems = reconcile(
        [OrderState.model_validate(s) for s in states],
        inventory=engines["inventory"],
        payment=engines["payment"],
        shipping=engines["shipping"],
        provider=engines["payment_provider"],  # one capture per order, none extra
        initial_stock={p.sku: p.stock for p in DEMO_CATALOG},
    )
    assert problems == []
