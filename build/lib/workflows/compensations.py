"""The saga's compensation stack, and a way to await work that cancellation must not stop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from typing import TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from cloudmart.contracts.activities import ActivitySpec
    from cloudmart.contracts.steps import Compensate, CompensationResult

T = TypeVar("T")

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


async def uninterruptible(work: Awaitable[T]) -> T:
    """Await ``work`` to its end even if the caller is cancelled meanwhile.

    A cancellation aimed at the caller (e.g. a second cancel request while compensating) is
    absorbed; the work itself keeps running and its result or error is returned as usual.
    """
    task = asyncio.ensure_future(work)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                return task.result()  # its own outcome, whatever cancelled the caller
