"""The saga's compensation stack, and the event each compensation's outcome is recorded as."""

from __future__ import annotations

from collections.abc import Iterator

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from cloudmart.contracts import activities as act
    from cloudmart.contracts.activities import ActivitySpec
    from cloudmart.contracts.events import EventType
    from cloudmart.contracts.steps import Compensate, CompensationResult

from workflows.event_log import EventLog
from workflows.order_state import SYSTEM

Compensation = ActivitySpec[Compensate, CompensationResult]

UNDO_EVENTS = {
    act.CANCEL_USER.name: EventType.GUEST_ACCOUNT_CANCELLED,
    act.RELEASE_INVENTORY.name: EventType.INVENTORY_RELEASED,
    act.REFUND_PAYMENT.name: EventType.PAYMENT_REFUNDED,
    act.CANCEL_SHIPMENT.name: EventType.SHIPMENT_CANCELLED,
}


class CompensationStack:
    """Compensations are pushed *before* their step runs: a step may take effect even if its
    result is lost (a timeout, a crash, a cancel), so its undo must already be on the stack.
    Undoing a step that never happened is a no-op that leaves a tombstone behind.
    """

    def __init__(self) -> None:
        self._stack: list[Compensation] = []

    def push(self, compensation: Compensation) -> None:
        self._stack.append(compensation)

    def in_undo_order(self) -> Iterator[Compensation]:
        """Last pushed first."""
        return reversed(self._stack)


def record_undone(
    events: EventLog, compensation: Compensation, outcome: CompensationResult, customer_id: str
) -> None:
    """Record what ``compensation`` did. Cancel User's says which account, and why one was kept
    (another order of its own)."""
    account = (
        {"customer_id": customer_id, "detail": outcome.detail}
        if compensation.name == act.CANCEL_USER.name
        else {}
    )
    events.record(
        UNDO_EVENTS[compensation.name],
        by=SYSTEM,
        outcome=outcome.outcome,
        lines=[line.model_dump() for line in outcome.lines],
        amount_cents=outcome.amount_cents,
        **account,
    )
