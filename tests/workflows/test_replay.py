"""Recorded histories replay against today's workflow code without nondeterminism.

``tests/histories/<folder>/<scenario>.json`` are histories recorded by earlier code, one JSON per
scenario: the check that a change to the saga does not break sagas already in flight.

- ``order-saga-1.1``: today's saga, with the customers step (``workflow.patched("customer-step")``)
  first: every scenario, and three of a guest checkout and a closed account.
- ``order-saga-1.0``: the released saga before the customers step, every scenario; and
  ``cancel_with_a_steps_result``, recorded by 1.0 with stand-in services
  (tests/workflows/test_racing_answers.py's first race): a cancel accepted in the task that
  delivered the charge's result, which 1.0 answered and then ignored. It replays as it ran:
  today's check after a step is behind a patch.
- ``before-fraud-screen``: the saga before ``workflow.patched("fraud-check")`` added the fraud
  screen (docs/versioning.md's worked example), recorded by the code of then with that patch not
  taken, which is that code command for command.

Record today's folder only on purpose (a new release, a new scenario), with
``CLOUDMART_RECORD_HISTORIES=1 pytest tests/workflows/test_replay.py -k fresh``;
it writes ``order-saga-1.1`` alone. Never rewrite the folder of a release that sagas may still be
running: the older folders are kept as they were recorded.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from cloudmart.contracts.customers import Guest, RegisterCustomer
from cloudmart.contracts.orders import CancelOrder, OrderState, OrderStatus, PaymentReviewDecision
from cloudmart.settings import Settings
from services.customers import CustomersService
from services.factory import Services
from tests.support import TEST_CONVERTER, new_saga_input
from tests.workflows.saga_helpers import before_the_screen, start, wait_for_status
from workflows.order_saga import CUSTOMER_STEP, FRAUD_SCREEN, OrderSaga

HISTORIES = Path(__file__).parent.parent / "histories"
RELEASE, V1_0, BEFORE_THE_SCREEN = "order-saga-1.1", "order-saga-1.0", "before-fraud-screen"
RECORD = os.environ.get("CLOUDMART_RECORD_HISTORIES") == "1"
SCENARIOS = 11
CUSTOMER_SCENARIOS = ("guest_completed", "guest_declined", "account_closed")
"""Recorded by today's saga only: the earlier ones had no customers step."""
RACE = "cancel_with_a_steps_result"
RECORDED = {
    RELEASE: SCENARIOS + len(CUSTOMER_SCENARIOS),
    V1_0: SCENARIOS + 1,
    BEFORE_THE_SCREEN: SCENARIOS,
}

Saga = WorkflowHandle[OrderSaga, OrderState]


async def record_scenarios(
    env: WorkflowEnvironment, settings: Settings, customers: CustomersService | None = None
) -> dict[str, WorkflowHistory]:
    """Every scenario; with ``customers``, those of the customers step too."""
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

    if customers is not None:
        for name, token in (("guest_completed", "tok_ok"), ("guest_declined", "tok_decline")):
            guest = Guest(name="Grace Hopper", email=f"grace-{uuid.uuid4().hex[:8]}@example.com")
            saga = new_saga_input(settings, token=token, guest=guest)
            await finish(name, await start(client, saga))
        email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
        closed = customers.register(RegisterCustomer(name="Ada Lovelace", email=email))
        customers.close(closed.customer_id, "moved away", by=closed.customer_id)
        saga = new_saga_input(settings).model_copy(update={"customer_id": closed.customer_id})
        await finish("account_closed", await start(client, saga))

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
    histories = await record_scenarios(temporal_env, settings, workers.customers)
    assert len(histories) == RECORDED[RELEASE]
    await replay(list(histories.values()))
    if RECORD:
        write(RELEASE, histories)


async def test_fresh_histories_of_the_saga_before_the_screen_replay(
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    workers: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Also the proof of the customers step's patch: these sagas lack it, as 1.0's do, while
    their inputs name the customers queue (the recorded 1.0 sagas' inputs name none)."""
    with monkeypatch.context() as old_code:
        before_the_screen(old_code)
        histories = await record_scenarios(temporal_env, settings)
    await replay(list(histories.values()))  # on today's code, the patches taken where they can be


def recorded(folder: str) -> list[Path]:
    files = sorted((HISTORIES / folder).glob("*.json"))
    assert len(files) == RECORDED[folder], f"expected {RECORDED[folder]} histories in {folder}"
    return files


@pytest.mark.parametrize("folder", [RELEASE, V1_0, BEFORE_THE_SCREEN])
async def test_recorded_histories_replay_against_todays_code(folder: str) -> None:
    await replay(
        [WorkflowHistory.from_json(f"order-{f.stem}", f.read_text()) for f in recorded(folder)]
    )


def patches(text: str) -> list[str]:
    """The patches a recorded history took, in order (the id in each patch marker)."""
    taken = []
    for event in json.loads(text)["events"]:
        marker = event.get("markerRecordedEventAttributes")
        if marker is not None:
            data = marker["details"]["patch-data"]["payloads"][0]["data"]
            taken.append(json.loads(base64.b64decode(data))["id"])
    return taken


def test_each_folder_records_what_it_says() -> None:
    """Today's sagas took the customers step's patch first, the screen's once past their
    reservation; 1.0's, the screen's alone, and no customers step; the only timer is a review
    hold's deadline (the saga stores its events without one). The sagas before the screen have
    no patch marker and ran neither."""
    for path in recorded(RELEASE):
        text = path.read_text()
        screened = path.stem not in ("out_of_stock", "account_closed")
        assert patches(text) == [CUSTOMER_STEP, *([FRAUD_SCREEN] if screened else [])], path.name
        assert '"name": "customers.ensure"' in text, path.name
        assert ('"name": "customers.cancel_user"' in text) is (path.stem == "guest_declined")
        assert ('"name": "payment.check_fraud"' in text) is screened, path.name
    for path in recorded(V1_0):
        text = path.read_text()
        screened = path.stem != "out_of_stock"
        assert patches(text) == ([FRAUD_SCREEN] if screened else []), path.name
        assert ('"name": "payment.check_fraud"' in text) is screened, path.name
        assert "customers." not in text, path.name
    for path in [*recorded(RELEASE), *recorded(V1_0)]:
        text = path.read_text()
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
    text = (HISTORIES / V1_0 / f"{RACE}.json").read_text()
    assert text.count('"workflowExecutionUpdateAcceptedEventAttributes"') == 1
    assert '"name": "inventory.commit"' in text and '"name": "inventory.release"' not in text
    assert '"workflowExecutionCompletedEventAttributes"' in text
    assert "cancel-after-a-step" not in text
