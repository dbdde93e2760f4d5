"""Activity survives the API's crash: a burst of customers' requests against a real ``python -m
api``, SIGKILLed mid-burst, then restarted; every request that got its answer has its action
recorded, exactly once (docs/activity.md, "Durability")."""

from __future__ import annotations

import signal
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from devstack.processes import free_port
from devstack.stack import DevStack
from tests.support import start_api
from tests.system.api.test_api import order_body
from tests.system.api.test_auth import bearer, customer_token

BURST = 400
"""Requests sent; the API is killed long before they are all answered."""
KILL_AFTER = 60
"""Answers received before the kill."""


def test_every_answered_action_is_recorded_once_after_a_sigkill(
    dev_stack: DevStack, tmp_path: Path
) -> None:
    settings = dev_stack.settings.model_copy(
        update={
            "api_port": free_port(),
            "require_auth": True,
            "activity_journal_dir": tmp_path / "journal",
        }
    )
    customer = f"burst-{uuid.uuid4().hex[:8]}"
    headers = bearer(customer_token(settings, customer))
    base_url = f"http://127.0.0.1:{settings.api_port}"
    answered: list[str] = []  # the request ids of the answers received
    enough = threading.Event()
    lock = threading.Lock()

    def one(n: int, http: httpx.Client) -> None:
        sent = f"burst-{n}-{uuid.uuid4().hex[:6]}"
        request_headers = {**headers, "X-Request-Id": sent}
        try:
            if n % 10 == 0:  # an order now and then, the rest searches
                body = order_body(customer=customer, items=[("MOUSE-ERGO-01", 1)])
                request_headers["Idempotency-Key"] = sent
                response = http.post("/orders", json=body, headers=request_headers)
            else:
                response = http.get("/products", params={"q": f"{n}"}, headers=request_headers)
        except httpx.TransportError:
            return  # no answer: the API was killed first (recorded or not, either is right)
        assert response.status_code in (200, 202), response.text
        with lock:
            # The request's id as recorded: the audit trail's (answered in X-Request-Id) or ours.
            answered.append(response.headers.get("X-Request-Id", sent))
            if len(answered) >= KILL_AFTER:
                enough.set()

    api = start_api(settings)
    api.wait_ready(30)
    with (
        httpx.Client(base_url=base_url, timeout=10) as http,
        ThreadPoolExecutor(8) as pool,
    ):
        for n in range(BURST):
            pool.submit(one, n, http)
        assert enough.wait(60), api.failure("answered too few requests")
        api.signal(signal.SIGKILL)  # mid-burst: requests in flight, actions not yet stored
        assert api.popen.wait(10) == -signal.SIGKILL
    assert len(answered) < BURST  # the kill came mid-burst

    restarted = start_api(settings)
    try:
        restarted.wait_ready(30)
        with httpx.Client(base_url=base_url, timeout=10, headers=headers) as http:
            recorded, cursor = [], None
            while True:
                params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
                page = http.get(f"/customers/{customer}/activity", params=params)
                assert page.status_code == 200, page.text
                recorded += [entry["request_id"] for entry in page.json()["items"]]
                if (cursor := page.json()["next_cursor"]) is None:
                    break
    finally:
        assert restarted.stop() == 0, restarted.failure("did not exit 0")
    missing = set(answered) - set(recorded)
    assert not missing, f"{len(missing)} answered action(s) lost: {sorted(missing)[:5]}"
    assert len(recorded) == len(set(recorded)), "an action was recorded twice"
    assert list((tmp_path / "journal").iterdir()) == []  # the dead process's journal, stored
