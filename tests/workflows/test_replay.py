"""Recorded histories replay against today's workflow code without nondeterminism.

``tests/histories/<folder>/<scenario>.json`` are histories recorded by earlier code, one JSON per
scenario: the check that a change to the saga does not break sagas already in flight.

- ``order-saga-1.0``: the released saga, every scenario; and ``cancel_with_a_steps_result``,
  recorded by 1.0 with stand-in services (tests/workflows/test_racing_answers.py's first race):
  a cancel accepted in the task that delivered the charge's result, which 1.0 answered and then
  ignored. It replays as it ran: today's check after a step is behind a patch.
- ``before-fraud-screen``: the saga before ``workflow.patched("fraud-check")`` added the fraud
  screen (docs/versioning.md's worked example), recorded by today's code with that patch not
  taken, which is that code command for command.

Record them only on purpose (a new release, a new scenario), with
``CLOUDMART_RECORD_HISTORIES=1 pytest tests/workflows/test_replay.py -k "fresh and sqlite"``;
never rewrite the folder of a release that sagas may still be running.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from cloudmart.contracts.orders import CancelOrder, OrderState, OrderStatus, PaymentReviewDecision
from cloudmart.settings import Settings
from services.factory import Services
from tests.support import TEST_CONVERTER, new_saga_input
from tests.workflows.saga_helpers import before_the_screen, start, wait_for_status
from workflows.order_saga import OrderSaga

HISTORIES = Path(__file__).parent.parent / "histories"
RELEASE, BEFORE_THE_SCREEN = "order-saga-1.0", "before-fraud-screen"
RECORD = os.environ.get("CLOUDMART_RECORD_HISTORIES") == "1"
SCENARIOS = 11
RACE = "cancel_with_a_steps_result"
RECORDED = {RELEASE: SCENARIOS + 1, BEFORE_THE_SCREEN: SCENARIOS}

Saga = WorkflowHandle[OrderSaga, OrderState]


async def record_scenarios(
    env: WorkflowEnvironment, settings: Settings
) -> dict[str, WorkflowHistory]:
    client = env.client
    histories: dict[str, WorkflowHistory] = {}

    async def finish(name: str, handle: Saga) -> None:
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

    held: dict[str, Callable[[Saga], object]] = {
        "review_approved": lambda h: h.execute_update(
            OrderSaga.review_payment, PaymentReviewDecision(approved=True)
        ),
        "review_rejected": lambda h: h.execute_update(
            OrderSaga.review_payment, PaymentReviewDecision(approved=False)
        ),
        "customer_cancel": lambda h: h.execute_update(OrderSaga.cancel, CancelOrder()),
        "temporal_cancel": lambda h: h.cancel(),
        "review_timed_out": lambda _: env.sleep(timedelta(hours=24, seconds=1)),
    }
    for name, act in held.items():
        handle = await start(client, new_saga_input(settings, token="tok_review"))
        await wait_for_status(handle, OrderStatus.AWAITING_PAYMENT_REVIEW)
        await act(handle)  # type: ignore[misc]
        await finish(name, handle)
    return histories


async def replay(histories: list[WorkflowHistory]) -> None:
    replayer = Replayer(workflows=[OrderSaga], data_converter=TEST_CONVERTER)
    for history in histories:
        await replayer.replay_workflow(history)  # raises on any nondeterminism


def write(folder: str, histories: dict[str, WorkflowHistory]) -> None:
    (HISTORIES / folder).mkdir(parents=True, exist_ok=True)
    for name, history in histories.items():
        text = json.dumps(json.loads(history.to_json()), indent=1) + "\n"
        (HISTORIES / folder / f"{name}.json").write_text(text)


async def test_fresh_histories_of_every_scenario_replay(
    temporal_env: WorkflowEnvironment, settings: Settings, workers: Services
) -> None:
    histories = await record_scenarios(temporal_env, settings)
    assert len(histories) == SCENARIOS
    await replay(list(histories.values()))
    if RECORD:
        write(RELEASE, histories)


async def test_fresh_histories_of_the_saga_before_the_screen_replay(
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    workers: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with monkeypatch.context() as old_code:
        before_the_screen(old_code)
        histories = await record_scenarios(temporal_env, settings)
    await replay(list(histories.values()))  # on today's code, the patch taken where it can be
    if RECORD:
        write(BEFORE_THE_SCREEN, histories)


def recorded(folder: str) -> list[Path]:
    files = sorted((HISTORIES / folder).glob("*.json"))
    assert len(files) == RECORDED[folder], f"expected {RECORDED[folder]} histories in {folder}"
    return files


@pytest.mark.parametrize("folder", [RELEASE, BEFORE_THE_SCREEN])
async def test_recorded_histories_replay_against_todays_code(folder: str) -> None:
    await replay(
        [WorkflowHistory.from_json(f"order-{f.stem}", f.read_text()) for f in recorded(folder)]
    )


def test_each_folder_records_what_it_says() -> None:
    """The release's sagas took the screen's patch once past their reservation, and no other;
    the only timer is a review hold's deadline (the saga stores its events without one). The
    sagas before the screen have no patch marker and never ran it."""
    for path in recorded(RELEASE):
        text = path.read_text()
        markers = re.findall(r'"markerName": "(\w+)"', text)
        screened = path.stem != "out_of_stock"
        assert markers == (["core_patch"] if screened else []), path.name
        assert ('"name": "payment.check_fraud"' in text) is screened, path.name
        held = "review" in path.stem or path.stem.endswith("_cancel")
        assert text.count("timerStartedEventAttributes") == int(held), path.name
        assert '"name": "event_store.append"' in text, path.name
    for path in recorded(BEFORE_THE_SCREEN):
        text = path.read_text()
        assert "markerName" not in text, path.name
        assert "payment.check_fraud" not in text, path.name


def test_the_recorded_race_is_the_one_1_0_lost() -> None:
    """1.0 accepted the cancel and then completed the order: the history the patch must keep
    replaying as it ran."""
    text = (HISTORIES / RELEASE / f"{RACE}.json").read_text()
    assert text.count('"workflowExecutionUpdateAcceptedEventAttributes"') == 1
    assert '"name": "inventory.commit"' in text and '"name": "inventory.release"' not in text
    assert '"workflowExecutionCompletedEventAttributes"' in text
    assert "cancel-after-a-step" not in text
