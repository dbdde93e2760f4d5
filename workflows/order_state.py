"""The order as the saga shows it: the state its query answers, and its search attributes."""

from __future__ import annotations

from datetime import timedelta
from typing import NoReturn

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from cloudmart.contracts.orders import (
        OrderSagaInput,
        OrderState,
        OrderStatus,
        StepRecord,
        StepStatus,
    )
    from cloudmart.contracts.saga import CUSTOMER_ID, ORDER_STATUS

from workflows.saga_metrics import SagaMetrics

SYSTEM, OPERATOR = "system", "operator"
"""Who caused an event, besides the customer: the saga itself, or an operator."""
LASTING = frozenset(
    {
        OrderStatus.AWAITING_PAYMENT_REVIEW,
        OrderStatus.COMPENSATING,
        OrderStatus.COMPENSATION_STUCK,
        OrderStatus.STEP_STUCK,
        *(status for status in OrderStatus if status.is_terminal),
    }
)
"""The statuses worth a search attribute update (a history event and a visibility write); a
step's few milliseconds are the state query's alone."""


class OrderProgress:
    """The order as callers see it while the saga runs: its state (``state``), each step's
    record, and the OrderStatus and CustomerId search attributes."""

    def __init__(self, order: OrderSagaInput) -> None:
        now = workflow.now()
        self._customer_id = order.customer_id
        self._metrics = SagaMetrics()
        self._started = False
        self.state = OrderState(
            order_id=order.order_id,
            customer_id=order.customer_id,
            status=OrderStatus.PENDING,
            items=order.items,
            created_at=now,
            updated_at=now,
        )

    def set_status(self, status: OrderStatus) -> None:
        unstuck = self.state.status is OrderStatus.STEP_STUCK  # listed as stuck no longer
        self._metrics.status(self.state.status if self._started else None, status)
        self._started = True
        self.state.status = status
        self.state.updated_at = workflow.now()
        if status not in LASTING and not unstuck and not _search_attributes_missing():
            return
        # No amount among them: search attributes are stored in clear, out of the codec's reach.
        workflow.upsert_search_attributes(
            [ORDER_STATUS.value_set(status.value), CUSTOMER_ID.value_set(self._customer_id)]
        )
        workflow.logger.info("Order %s is %s", self.state.order_id, status)

    def begin(self, records: list[StepRecord], name: str) -> StepRecord:
        """A step or compensation starts (``records``: the state's steps or compensations)."""
        record = StepRecord(name=name, status=StepStatus.RUNNING, at=workflow.now())
        records.append(record)
        return record

    def end(self, record: StepRecord, status: StepStatus, detail: str | None = None) -> None:
        began = record.at
        record.status = status
        if any(undo is record for undo in self.state.compensations):
            self._metrics.compensation(record)
        else:
            self._metrics.step(record, began)
        record.at = workflow.now()
        record.detail = detail
        self.state.updated_at = record.at


def _search_attributes_missing() -> bool:
    """Whether the saga was started without its search attributes (the API sets them; a plain
    client may not), so that its first status must set them."""
    found = workflow.info().typed_search_attributes
    return found.get(CUSTOMER_ID) is None or found.get(ORDER_STATUS) is None


def refuse(message: str, reason: str) -> NoReturn:
    """Refuse an update: the caller gets ``message`` (its type ``reason``); the history records
    nothing."""
    raise ApplicationError(message, type=reason, non_retryable=True)


def duration(span: timedelta) -> str:
    """``span`` as a person writes it: 24h, 30m, 90s."""
    seconds = int(span.total_seconds())
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
