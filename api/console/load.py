"""The operator's load generator: orders per second with a chosen mix of outcomes, placed through
the API like any client's, and what they did, second by second, for the operator page's charts.

Each order is ``POST /orders?wait=`` (the answer waits for the saga's end), so its latency is the
saga's as a client sees it, and its outcome comes with it. Worker backlog is Temporal's own
count of the saga's task queue. One run at a time per API process; it stops at its duration, or
when the API shuts down (the orders already placed go on: they are sagas)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from api.console.backend import ConsoleBackend
from api.deps import AppState
from api.tokens import mint

log = logging.getLogger("cloudmart.console")

MIX = {
    "tok_ok": ("completes", "DE"),
    "tok_decline": ("payment declined", "DE"),
    "undeliverable": ("shipping refuses Japan", "JP"),
    "tok_flaky": ("provider down twice, then completes", "NL"),
    "tok_fraud": ("fraud screen refuses", "FR"),
}
"""The outcomes an operator may mix: a payment token (or Japan, with ``tok_ok``) and where to."""
SKUS = ("CABLE-USBC-2M", "HUB-USBC-7", "MOUSE-ERGO-01", "LAMP-LED-01")
MAX_RATE = 20
MAX_SECONDS = 300
WAIT = 30
"""Seconds an order's request waits for its saga (POST /orders?wait=)."""


@dataclass
class Second:
    at: float
    placed: int
    ended: int
    p50_ms: float | None
    backlog: int | None


@dataclass
class LoadRun:
    run_id: str
    rate: float
    seconds: int
    mix: dict[str, int]
    started: float = field(default_factory=time.monotonic)
    placed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    series: list[Second] = field(default_factory=list)
    placing: bool = True

    @property
    def ended(self) -> int:
        return sum(self.outcomes.values())

    @property
    def in_flight(self) -> int:
        return self.placed - self.ended

    @property
    def done(self) -> bool:
        return not self.placing and self.in_flight == 0

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "rate": self.rate,
            "seconds": self.seconds,
            "placed": self.placed,
            "ended": self.ended,
            "in_flight": self.in_flight,
            "done": self.done,
            "outcomes": dict(self.outcomes),
            "p50_ms": _p50(self.latencies_ms),
            "series": [second.__dict__ for second in self.series],
        }


def _p50(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


class LoadGenerator:
    def __init__(self, backend: ConsoleBackend) -> None:
        self._backend = backend
        self.run: LoadRun | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> bool:
        return self.run is not None and not self.run.done

    def start(self, state: AppState, rate: float, seconds: int, mix: dict[str, int]) -> LoadRun:
        """A new run (the caller checked that none is running and the numbers are in range)."""
        run = LoadRun(run_id=uuid.uuid4().hex[:8], rate=rate, seconds=seconds, mix=mix)
        self.run = run
        self._spawn(self._place_all(state, run))
        self._spawn(self._sample(state, run))
        return run

    def _spawn(self, work: Any) -> None:
        # Its own context, not the operator's request: under tracing each generated order is a
        # trace of its own rather than hundreds of children of one click.
        task = asyncio.create_task(work, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _place_all(self, state: AppState, run: LoadRun) -> None:
        chooser = random.Random(run.run_id)
        kinds, weights = list(run.mix), list(run.mix.values())
        interval = 1 / run.rate
        total = round(run.rate * run.seconds)
        try:
            for n in range(total):
                # On a schedule, not after each answer: the load does not slow down with the
                # system (an open model, as real customers arrive).
                delay = run.started + n * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                kind = chooser.choices(kinds, weights)[0]
                run.placed += 1
                self._spawn(self._place(state, run, n, kind))
        finally:
            run.placing = False

    async def _place(self, state: AppState, run: LoadRun, n: int, kind: str) -> None:
        token = "tok_ok" if kind == "undeliverable" else kind
        customer_id = f"load-{run.run_id}-{n % 50}"
        body = {
            "customer_id": customer_id,
            "items": [{"sku": SKUS[n % len(SKUS)], "quantity": 1}],
            "payment_token": token,
            "shipping_address": {
                "name": "Load Generator",
                "line1": "1 Test Street",
                "city": "Testville",
                "postal_code": "12345",
                "country": MIX[kind][1],
            },
        }
        bearer = None
        if state.settings.require_auth and state.settings.auth_secret is not None:
            bearer = mint(customer_id, state.settings.auth_secret.get_secret_value())
        began = time.monotonic()
        try:
            answer = await self._backend.call_as(
                bearer,
                "POST",
                "/orders",
                json=body,
                params={"wait": WAIT},
                headers={"Idempotency-Key": f"load-{run.run_id}-{n}"},
            )
            state_body = answer.body.get("state") if isinstance(answer.body, dict) else None
            outcome = state_body["status"] if state_body else f"HTTP {answer.status}"
        except Exception as err:  # counted, never lost: the chart shows it
            outcome = type(err).__name__
        run.latencies_ms.append((time.monotonic() - began) * 1000)
        run.outcomes[outcome] += 1

    async def _sample(self, state: AppState, run: LoadRun) -> None:
        last_placed = last_ended = last_latencies = 0
        while not run.done:
            await asyncio.sleep(1)
            recent = run.latencies_ms[last_latencies:]
            run.series.append(
                Second(
                    at=round(time.monotonic() - run.started, 1),
                    placed=run.placed - last_placed,
                    ended=run.ended - last_ended,
                    p50_ms=_p50(recent),
                    backlog=await _backlog(state),
                )
            )
            last_placed, last_ended, last_latencies = run.placed, run.ended, len(run.latencies_ms)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def _backlog(state: AppState) -> int | None:
    """The saga's task queue's backlog of workflow tasks, as Temporal counts it (None when it
    cannot say)."""
    try:
        described = await state.client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=state.client.namespace,
                task_queue=TaskQueue(name=state.settings.task_queues.orders),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                report_stats=True,
            )
        )
    except Exception as err:
        log.info("task queue backlog unknown: %s", err)
        return None
    return int(described.stats.approximate_backlog_count)
