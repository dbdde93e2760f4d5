"""Histories of every kind of saga replay against today's workflow code without nondeterminism.

``tests/histories/<version>/*.json`` are histories recorded from earlier versions of the code,
one folder per version of the saga: they are the check that a change to the saga does not break
sagas already in flight. ``1-saga`` is the saga before the order event log (``workflow.patched``
keeps it replaying); ``2-order-events`` records every event; ``3-fraud-check`` is saga v2, with the
fraud screen before the charge; ``4-lean-history`` is saga v3, its events appended in batches;
``5-event-windows`` is saga v4, its windows chosen by workflow time; ``6-timer-windows`` is saga
v5, its windows closed by their timers alone; ``7-local-appends`` is saga v6, whose sagas in the
local step mode (``local_*``) append their events with local activities; ``8-saga-v7`` is saga
v7, the same commands under one patch; ``9-saga-v8`` is saga v8, its windows closed by the saga
itself, with no timer.
Record the newest version's only on purpose (a new version, a new scenario), with
``CLOUDMART_RECORD_HISTORIES=1 pytest tests/workflows/test_replay.py``; never rewrite an older one.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from cloudmart.contracts.orders import (
    CancelOrder,
    OrderState,
    OrderStatus,
    PaymentReviewDecision,
)
from cloudmart.settings import Settings
from services.factory import Services
from tests.support import TEST_CONVERTER, new_saga_input
from tests.workflows.saga_helpers import start, wait_for_status
from workflows.order_saga import OrderSaga

HISTORIES = Path(__file__).parent.parent / "histories"
VERSIONS = (
    "1-saga",
    "2-order-events",
    "3-fraud-check",
    "4-lean-history",
    "5-event-windows",
    "6-timer-windows",
    "7-local-appends",
    "8-saga-v7",
    "9-saga-v8",
)
RECORD = os.environ.get("CLOUDMART_RECORD_HISTORIES") == "1"
PATCH_DATA = {
    patch: base64.b64encode(
        json.dumps({"id": patch, "deprecated": False}, separators=(",", ":")).encode()
    ).decode()
    for patch in ("event-windows", "timer-windows", "local-appends", "saga-v7", "saga-v8")
}
"""A patch marker's data as a recorded history spells it (base64 JSON)."""


async def record_scenarios(
    env: WorkflowEnvironment, settings: Settings
) -> dict[str, WorkflowHistory]:
    client = env.client
    histories: dict[str, WorkflowHistory] = {}

    async def finish(name: str, handle: WorkflowHandle[OrderSaga, OrderState]) -> None:
        with contextlib.suppress(WorkflowFailureError):  # FAILED, or cancelled through Temporal
            await handle.result()
        histories[name] = await handle.fetch_history()

    for name, kwargs in {
        "completed": {},
        "out_of_stock": {"items": (("SKU-A", 101),)},
        "payment_declined": {"token": "tok_decline"},
        "fraud_suspected": {"token": "tok_fraud"},
        "flaky_payment": {"token": "tok_flaky"},
        "undeliverable": {"country": "JP"},
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
        "review_timed_out": lambda _: env.sleep(timedelta(hours=24, seconds=1)),
    }.items():
        saga = new_saga_input(settings, token="tok_review")
        handle = await start(client, saga)
        await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
        await act(handle)
        await finish(name, handle)
    return histories


async def replay(histories: list[WorkflowHistory]) -> None:
    # Fresh histories are encrypted with the tests' key; recorded ones predate encryption and
    # pass through the codec unchanged.
    replayer = Replayer(workflows=[OrderSaga], data_converter=TEST_CONVERTER)
    for history in histories:
        await replayer.replay_workflow(history)  # raises on any nondeterminism


async def test_fresh_histories_of_every_scenario_replay(
    temporal_env: WorkflowEnvironment, settings: Settings, workers: Services
) -> None:
    histories = await record_scenarios(temporal_env, settings)
    assert len(histories) == 11
    await replay(list(histories.values()))
    if RECORD:
        newest = HISTORIES / VERSIONS[-1]
        newest.mkdir(exist_ok=True)
        for name, history in histories.items():
            path = newest / f"{name}.json"
            path.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")


def recorded(version: str) -> list[Path]:
    return sorted((HISTORIES / version).glob("*.json"))


@pytest.mark.parametrize("version", VERSIONS)
async def test_recorded_histories_replay_against_todays_code(version: str) -> None:
    files = recorded(version)
    assert len(files) >= 10, f"expected the recorded histories in {HISTORIES / version}"
    await replay([WorkflowHistory.from_json(f"order-{f.stem}", f.read_text()) for f in files])


def test_each_version_records_what_it_added() -> None:
    """Each folder holds the saga of its version (else it proves nothing new): v1 has no patch
    marker; from the event log on, the appends; from v2 on, the fraud screen (in every saga that
    got past the reservation); from v3 on, a few batched appends rather than about one per
    event; in v4, the timed windows' patch; from v5 on, the timer windows' patch instead; in v6,
    sagas in the local step mode with no activity scheduled at all; from v7 on, one patch marker;
    in v8, no window timer (the only timer is a review hold's deadline)."""
    for path in recorded("1-saga"):
        assert "markerName" not in path.read_text(), path.name
    for version in VERSIONS[1:]:
        for path in recorded(version):
            text = path.read_text()
            markers = re.findall(r'"markerName": "(\w+)"', text)
            assert "core_patch" in markers, path.name
            v7 = PATCH_DATA["saga-v7"] in text
            assert v7 is (version == "8-saga-v7"), path.name
            v8 = PATCH_DATA["saga-v8"] in text
            assert v8 is (version == "9-saga-v8"), path.name
            one_patch = v7 or v8
            timers = text.count("timerStartedEventAttributes")
            held = "review" in path.stem or "cancel" in path.stem  # held for a payment review
            if v8:  # the review's deadline, no window's timer
                assert timers == int(held), path.name
            elif version >= "5":  # a window's timer at least
                assert timers > int(held), path.name
            assert '"name": "orders.append"' in text, path.name
            screened = '"name": "payment.check_fraud"' in text
            assert screened is (version >= "3" and path.stem != "out_of_stock"), path.name
            lean = text.count('"name": "orders.append"') <= 2
            assert lean is (version >= "4"), path.name
            timed = PATCH_DATA["event-windows"] in text
            assert timed is (version == "5-event-windows"), path.name
            by_timer = PATCH_DATA["timer-windows"] in text
            assert by_timer is ("6" <= version < "8"), path.name
            if one_patch:  # and none of the patches before it
                assert text.count('"markerName": "core_patch"') == 1, path.name
