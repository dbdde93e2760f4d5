"""The saga's Prometheus instruments (cloudmart/metrics.py): orders started and ended by outcome,
each step's latency and each compensation's outcome, orders declared stuck.

Through ``workflow.metric_meter()``, which records nothing while a worker replays a history: a
saga resumed on another worker, or after its cache evicted it, counts nothing twice. Metrics add
no command to the history, so they change nothing a replay compares (no patch is needed)."""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from cloudmart import metrics
    from cloudmart.contracts.orders import OrderStatus, StepRecord

STUCK = {OrderStatus.COMPENSATION_STUCK: "compensation", OrderStatus.STEP_STUCK: "step"}


class SagaMetrics:
    def __init__(self) -> None:
        meter = workflow.metric_meter()
        self._started = meter.create_counter(metrics.ORDERS_STARTED, "orders whose saga started")
        self._ended = meter.create_counter(metrics.ORDERS_ENDED, "orders ended, by outcome")
        self._latency = meter.create_histogram_timedelta(
            metrics.STEP_LATENCY, "a step from its first attempt to its result", "ms"
        )
        self._compensations = meter.create_counter(
            metrics.COMPENSATIONS, "compensations ended, by step and outcome"
        )
        self._stuck = meter.create_counter(metrics.ORDERS_STUCK, "orders declared stuck")

    def status(self, before: OrderStatus | None, after: OrderStatus) -> None:
        if before is None:
            self._started.add(1)
        elif after is before:
            return
        if after.is_terminal:
            self._ended.add(1, {"outcome": after.value})
        elif after in STUCK:
            self._stuck.add(1, {"kind": STUCK[after]})

    def step(self, record: StepRecord, began: datetime) -> None:
        attributes = {"step": record.name, "outcome": record.status.value}
        self._latency.record(workflow.now() - began, attributes)

    def compensation(self, record: StepRecord) -> None:
        self._compensations.add(1, {"step": record.name, "outcome": record.status.value})
