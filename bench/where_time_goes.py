"""Where a saga's time goes, from its own history's timestamps, next to the floor's.

    python -m bench.where_time_goes [--orders 30]

Runs sagas (through the Temporal client) and floor workflows of as many steps one at a time on
a stack like ``make up``'s, and splits each execution's wall time, as the server recorded it,
into:

- workflow tasks waiting to be picked up (scheduled -> started): the server's dispatch;
- workflow tasks running in the worker (started -> completed): our workflow code, the SDK's
  sandbox and (de)serialization, the payload codec;
- activities waiting to be picked up (scheduled -> started);
- activities running (started -> completed): the step's own work (database, provider).

The medians per execution are printed side by side, with the count of each kind and the wall
time. The phases are sums over the execution's tasks: the saga's event appends run beside its
steps, so its phases add up to more than its wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from bench.drivers import drive, floor, saga_via_client
from bench.saga_vs_floor import FLOOR_QUEUE, SAGA_ACTIVITIES
from bench.stats import table
from cloudmart.contracts.orders import StepMode
from cloudmart.devstack import DevStack, ManagedProcess, settings_env, throwaway_settings
from cloudmart.process import exit_now
from cloudmart.temporal import connect

PHASES = ("WFT wait", "WFT run", "activity wait", "activity run")


def split(events: list[HistoryEvent]) -> dict[str, float]:
    """Milliseconds of each phase in one execution, and the counts of tasks."""

    def ms(event: HistoryEvent) -> float:
        return event.event_time.ToMicroseconds() / 1000

    spent: dict[str, float] = defaultdict(float)
    scheduled: dict[int, HistoryEvent] = {}
    started: dict[int, HistoryEvent] = {}
    for event in events:
        kind = event.event_type
        if kind in (
            EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
            EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
        ):
            scheduled[event.event_id] = event
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            attributes = event.workflow_task_started_event_attributes
            spent["WFT wait"] += ms(event) - ms(scheduled[attributes.scheduled_event_id])
            started[event.event_id] = event
            spent["workflow tasks"] += 1
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            attributes = event.workflow_task_completed_event_attributes
            spent["WFT run"] += ms(event) - ms(started[attributes.started_event_id])
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            activity = event.activity_task_started_event_attributes
            schedule = scheduled[activity.scheduled_event_id]
            spent["activity wait"] += ms(event) - ms(schedule)
            started[event.event_id] = event
            spent["activities"] += 1
            kind_name = schedule.activity_task_scheduled_event_attributes.activity_type.name
            spent["of which event appends"] += kind_name == "orders.append"
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            completed = event.activity_task_completed_event_attributes
            spent["activity run"] += ms(event) - ms(started[completed.started_event_id])
    spent["total"] = ms(events[-1]) - ms(events[0])  # the history's span
    spent["events"] = len(events)
    return spent


async def histories(client: Client, ids: list[str]) -> list[dict[str, float]]:
    return [split(list((await client.get_workflow_handle(i).fetch_history()).events)) for i in ids]


async def measure(stack: DevStack, orders: int) -> dict[str, list[dict[str, float]]]:
    settings = stack.settings
    plain = await Client.connect(settings.temporal_address)
    client = await connect(settings)
    subjects = {
        "floor": (plain, floor(plain, FLOOR_QUEUE, SAGA_ACTIVITIES)),
        "saga": (client, saga_via_client(client, settings)),
        "local steps": (client, saga_via_client(client, settings, StepMode.LOCAL)),
    }
    found: dict[str, list[dict[str, float]]] = {}
    for name, (reader, one) in subjects.items():
        await drive("warm-up", 10, 1, one)
        since = datetime.now(UTC)
        run = await drive(name, orders, 1, one)
        ids = [
            execution.id
            async for execution in reader.list_workflows(
                f"WorkflowType = '{'Floor' if name == 'floor' else 'OrderSaga'}'"
                f" AND StartTime > '{since.isoformat()}'",
                limit=orders,
            )
        ]
        found[name] = await histories(reader, ids)
        for spent, taken in zip(found[name], run.latencies_ms, strict=True):
            spent["client"] = taken
    return found


def report(found: dict[str, list[dict[str, float]]]) -> str:
    rows = []
    medians = {
        name: {key: statistics.median(s.get(key, 0) for s in splits) for key in splits[0]}
        for name, splits in found.items()
    }
    counts = ("workflow tasks", "activities", "of which event appends", "events")
    for key in (*PHASES, "total", "client", *counts):
        unit = "" if key in counts else " ms"
        rows.append([key + unit, *(f"{medians[name].get(key, 0):.1f}" for name in medians)])
    return table(rows, ["median per execution", *medians])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cloudmart-where-") as data:
        settings = throwaway_settings(Path(data), task_queue_prefix=f"w-{uuid.uuid4().hex[:6]}")
        env = settings_env(settings)  # its worker, hosting every service, runs either step mode
        stack = DevStack(settings, env, output=None, persist=True)
        floor_worker: ManagedProcess | None = None
        try:
            stack.start()
            floor_worker = ManagedProcess.start(
                "floor-worker",
                [
                    *(sys.executable, "-m", "bench.floor"),
                    *("--address", settings.temporal_address),
                    *("--task-queue", FLOOR_QUEUE),
                ],
                env=env,
                output=None,
                ready_marker="worker ready",
            )
            floor_worker.wait_ready(30)
            found = asyncio.run(measure(stack, args.orders))
        finally:
            if floor_worker is not None:
                floor_worker.stop()
            stack.stop()
    print(f"{args.orders} executions each, one at a time (concurrency 1)")
    print(report(found))


if __name__ == "__main__":
    main()
    exit_now(0)
