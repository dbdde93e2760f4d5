"""Histories of every kind of saga replay against today's workflow code without nondeterminism.

``tests/histories/*.json`` are histories recorded from earlier versions of the code: they are the
check that a change to the saga does not break sagas already in flight. Re-record them only on
purpose (a new scenario), with
``CLOUDMART_RECORD_HISTORIES=1 pytest tests/workflows/test_replay.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from cloudmart.contracts.orders import (
    CancelOrder,
    OrderState,
    OrderStatus,
    PaymentReviewDecision,
)
from cloudmart.settings import Settings
from services.factory import Services
from tests.support import new_saga_input
from tests.workflows.saga_helpers import start, wait_for_status
from workflows.order_saga import OrderSaga

HISTORIES = Path(__file__).parent.parent / "histories"
RECORD = os.environ.get("CLOUDMART_RECORD_HISTORIES") == "1"


async def record_scenarios(client: Client, settings: Settings) -> dict[str, WorkflowHistory]:
    histories: dict[str, WorkflowHistory] = {}

    async def finish(name: str, handle: WorkflowHandle[OrderSaga, OrderState]) -> None:
        with contextlib.suppress(WorkflowFailureError):  # FAILED, or cancelled through Temporal
            await handle.result()
        histories[name] = await handle.fetch_history()

    for name, kwargs in {
        "completed": {},
        "out_of_stock": {"items": (("SKU-A", 101),)},
        "payment_declined": {"token": "tok_decline"},
        "flaky_payment": {"token": "tok_flaky"},
        "undeliverable": {"country": "JP"},
        "review_timed_out": {"token": "tok_review"},
    }.items():
        await finish(name, await start(client, new_saga_input(settings, **kwargs)))

    for name, act in {
        "review_approved": lambda h: h.execute_update(
            OrderSaga.review_payment, PaymentReviewDecision(approved=True)
        ),
        "review_rejected": lambda h: h.execute_update(
            OrderSaga.review_payment, PaymentReviewDecision(approved=False)
        ),
        "customer_cancel": lambda h: h.execute_update(OrderSaga.cancel, CancelOrder()),
        "temporal_cancel": lambda h: h.cancel(),
    }.items():
        handle = await start(client, new_saga_input(settings, token="tok_review"))
        await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
        await act(handle)
        await finish(name, handle)
    return histories


async def replay(histories: list[WorkflowHistory]) -> None:
    replayer = Replayer(workflows=[OrderSaga], data_converter=pydantic_data_converter)
    for history in histories:
        await replayer.replay_workflow(history)  # raises on any nondeterminism


async def test_fresh_histories_of_every_scenario_replay(
    client: Client, settings: Settings, workers: Services
) -> None:
    histories = await record_scenarios(client, settings)
    assert len(histories) == 10
    await replay(list(histories.values()))
    if RECORD:
        HISTORIES.mkdir(exist_ok=True)
        for name, history in histories.items():
            path = HISTORIES / f"{name}.json"
            path.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")


def recorded() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


async def test_recorded_histories_replay_against_todays_code() -> None:
    files = recorded()
    assert len(files) >= 10, f"expected the recorded histories in {HISTORIES}"
    await replay([WorkflowHistory.from_json(f"order-{f.stem}", f.read_text()) for f in files])
