"""The API's answers are promises under real races: the real stack, orders five at a time.

A cancel answered 202 ends the order CANCELLED, fully compensated; a 409 says why and the
order goes on. Of an operator's decision and a cancel sent together, exactly one is accepted,
and it is the one applied. (The same races, staged deterministically on the time-skipping
server: tests/workflows/test_racing_answers.py.)
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from devstack.stack import DevStack
from tests.system.api.test_api import order_body, place, wait_for

TRIALS = 30
UNDO = {
    "inventory.reserve": "inventory.release",
    "payment.charge": "payment.refund",
    "shipping.create": "shipping.cancel",
}
AT_ONCE = 5


@pytest.fixture(scope="module")
def api(dev_stack: DevStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dev_stack.api_url, timeout=30) as client:
        yield client


def undone(state: dict[str, Any]) -> list[str]:
    return [c["name"] for c in state["compensations"] if c["status"] == "COMPLETED"]


def cancel_soon_after_placing(api: httpx.Client, delay: float) -> tuple[int, dict[str, Any]]:
    order_id = place(api, order_body())
    time.sleep(delay)
    answer = api.post(f"/orders/{order_id}/cancel", json={"reason": "race"})
    assert answer.status_code in (202, 409), answer.text
    return answer.status_code, {**wait_for(api, order_id), "answer": answer.json()}


def test_a_cancel_answered_202_always_ends_cancelled_and_compensated(api: httpx.Client) -> None:
    rng = random.Random(21)
    delays = [rng.uniform(0.05, 0.29) for _ in range(TRIALS)]
    with ThreadPoolExecutor(AT_ONCE) as pool:
        results = list(pool.map(lambda d: cancel_soon_after_placing(api, d), delays))
    for code, state in results:
        if code == 202:
            assert state["status"] == "CANCELLED", state
            assert state["cancel_reason"] == "race"
            begun = [s["name"] for s in state["steps"]]
            assert "inventory.commit" not in begun, state
            # each step begun had its compensation pushed before it: all ran, in reverse
            assert undone(state) == [UNDO[s] for s in reversed(begun) if s in UNDO], state
        else:
            assert state["status"] == "COMPLETED", state
            detail = state["answer"]["detail"]
            assert "too late to cancel" in detail or detail == "order is already COMPLETED"
    assert any(code == 202 for code, _ in results), "no cancel was in time: the race was not run"


def decide_and_cancel_at_once(
    api: httpx.Client, operator: dict[str, str], approved: bool
) -> tuple[httpx.Response, httpx.Response, dict[str, Any]]:
    order_id = place(api, order_body(token="tok_review"))
    wait_for(api, order_id, {"AWAITING_PAYMENT_REVIEW"})
    with ThreadPoolExecutor(2) as pool:
        review = pool.submit(
            api.post,
            f"/orders/{order_id}/payment-review",
            json={"approved": approved},
            headers=operator,
        )
        cancel = pool.submit(api.post, f"/orders/{order_id}/cancel", json={"reason": "race"})
        return review.result(), cancel.result(), wait_for(api, order_id)


@pytest.mark.parametrize("approved", [True, False], ids=["approve", "reject"])
def test_of_a_decision_and_a_cancel_sent_together_exactly_one_is_applied(
    api: httpx.Client, as_operator: dict[str, str], approved: bool
) -> None:
    with ThreadPoolExecutor(AT_ONCE) as pool:
        trials = list(
            pool.map(lambda _: decide_and_cancel_at_once(api, as_operator, approved), range(10))
        )
    verdict = "approved" if approved else "rejected"
    for review, cancel, state in trials:
        assert 202 in (review.status_code, cancel.status_code), (review.text, cancel.text)
        steps = {s["name"]: s for s in state["steps"]}
        if review.status_code == 409:  # the cancel won: no decision was applied
            assert cancel.status_code == 202 and state["status"] == "CANCELLED", state
            assert review.json()["detail"] == "order was cancelled before the decision"
            assert "payment.resolve_review" not in steps, state
            continue
        assert steps["payment.review"]["detail"] == verdict, state  # the decision was applied
        assert steps["payment.resolve_review"]["status"] in ("COMPLETED", "FAILED"), state
        if cancel.status_code == 202:  # after the decision was applied: a cancel like any
            assert approved and state["status"] == "CANCELLED", state
        else:
            assert state["status"] == ("COMPLETED" if approved else "FAILED"), state
            detail = cancel.json()["detail"]
            too_late = approved and re.fullmatch(
                r"shipment \S+ is already created; too late to cancel", detail
            )  # the approval was applied and the saga shipped before the cancel arrived
            assert too_late or detail in (
                f"the payment review was just {verdict}; that decision is being applied",
                "order failed and is being compensated",
                "order is already FAILED",
                "order is already COMPLETED",
            ), state
