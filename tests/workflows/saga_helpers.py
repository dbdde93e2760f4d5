"""Driving the saga in tests: start it, pause a service call, read its history."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.worker import Worker

from cloudmart.contracts.orders import OrderSagaInput, OrderState, OrderStatus, StepRecord
from cloudmart.contracts.saga import workflow_id
from cloudmart.settings import Settings
from services.factory import Services
from tests.support import Gate
from worker import running_workers
from workflows.order_saga import CUSTOMER_STEP, FRAUD_SCREEN, OrderSaga


async def start(client: Client, saga: OrderSagaInput) -> WorkflowHandle[OrderSaga, OrderState]:
    return await client.start_workflow(
        OrderSaga.run, saga, id=workflow_id(saga.order_id), task_queue=saga.task_queues.orders
    )


@asynccontextmanager
async def one_worker(
    client: Client,
    settings: Settings,
    services: Services,
    *,
    sandboxed: bool = True,
) -> AsyncIterator[list[Worker]]:
    """The saga and the given services in this process, as ``python -m worker --service saga``
    runs them, eager dispatch off (see the saga_workers fixture)."""
    async with running_workers(
        client,
        settings.task_queues,
        orchestrator=True,
        services=services,
        activity_threads=settings.activity_threads,
        eager_activities=False,
        sandboxed=sandboxed,
    ) as workers:
        yield workers


def without_patches(monkeypatch: pytest.MonkeyPatch, *patches: str) -> None:
    """Today's code with ``patches`` not taken: the old branch of each, command for command."""
    taken: Callable[[str], bool] = workflow.patched
    monkeypatch.setattr(workflow, "patched", lambda patch: patch not in patches and taken(patch))


def before_the_customer_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Today's code without the customers step's patch: the saga as released in 1.0."""
    without_patches(monkeypatch, CUSTOMER_STEP)


def before_the_screen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Today's code without the fraud screen's patch, nor the customers step's that came after
    it: the saga as released before the screen (docs/versioning.md), command for command."""
    without_patches(monkeypatch, FRAUD_SCREEN, CUSTOMER_STEP)


async def patches_taken(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The patches the saga's history records as taken, in order (one marker each)."""
    taken: list[str] = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            data = event.marker_recorded_event_attributes.details["patch-data"].payloads[0].data
            taken.append(json.loads(data)["id"])
    return taken


def hold(monkeypatch: pytest.MonkeyPatch, service: object, method: str) -> Gate:
    """Make ``service.method`` wait at its start until the returned gate is opened."""
    gate = Gate()
    original: Callable[..., Any] = getattr(service, method)

    def held(*args: Any, **kwargs: Any) -> Any:
        gate.pass_()
        return original(*args, **kwargs)

    monkeypatch.setattr(service, method, held)
    return gate


def fail_first(
    monkeypatch: pytest.MonkeyPatch, service: object, method: str, times: int
) -> list[int]:
    """Make ``service.method`` raise a transient error on its first ``times`` calls.

    Returns a list that grows by one per call, to count attempts.
    """
    calls: list[int] = []
    original: Callable[..., Any] = getattr(service, method)

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(calls) + 1)
        if len(calls) <= times:
            raise ConnectionError(f"database unavailable (call {len(calls)})")
        return original(*args, **kwargs)

    monkeypatch.setattr(service, method, flaky)
    return calls


def outline(records: list[StepRecord]) -> list[tuple[str, str]]:
    return [(r.name, r.status.value) for r in records]


async def activity_attempts(handle: WorkflowHandle[Any, Any], activity_name: str) -> list[int]:
    """The attempt number of each start of ``activity_name`` recorded in the history."""
    scheduled: dict[int, str] = {}
    attempts: list[int] = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = (
                event.activity_task_scheduled_event_attributes.activity_type.name
            )
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            if scheduled.get(started.scheduled_event_id) == activity_name:
                attempts.append(started.attempt)
    return attempts


async def wait_for_status(
    handle: WorkflowHandle[OrderSaga, OrderState], status: OrderStatus, attempts: int = 200
) -> None:
    """Poll the saga's state query until it reports ``status`` (queries never skip time)."""
    for _ in range(attempts):
        if (await handle.query(OrderSaga.state)).status is status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"saga never reached {status}")


async def outcome(handle: WorkflowHandle[OrderSaga, OrderState]) -> OrderState:
    """The saga's final state, however its execution ended (a FAILED order ends it as Failed)."""
    try:
        return await handle.result()
    except WorkflowFailureError:
        return await handle.query(OrderSaga.state)
