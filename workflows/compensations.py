"""The saga's compensation stack."""

from __future__ import annotations

from collections.abc import Iterator

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from cloudmart.contracts.activities import ActivitySpec
    from cloudmart.contracts.steps import Compensate, CompensationResult

Compensation = ActivitySpec[Compensate, CompensationResult]


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
