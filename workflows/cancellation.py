"""Cancelling a saga: a cancel stops the forward steps, and nothing stops the compensations."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class ForwardSteps:
    """The forward steps, run as a task that a cancel stops.

    Both kinds of cancel arrive here: the customer's ``cancel`` update calls ``cancel``;
    Temporal's request (Web UI, CLI, ``handle.cancel()``) cancels the coroutine awaiting
    ``run``, which hands it to ``on_cancel_request`` (the saga turns it into the same cancel
    unless the order is past its point of no return) and keeps waiting for the steps.
    """

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._cancelled = False

    async def run(
        self, steps: Coroutine[Any, Any, None], on_cancel_request: Callable[[], None]
    ) -> None:
        if self._cancelled:  # cancelled before the first step
            steps.close()
            raise asyncio.CancelledError
        self._task = asyncio.create_task(steps)
        while True:
            try:
                return await asyncio.shield(self._task)
            except asyncio.CancelledError:
                if self._task.done():
                    # Cancelled (by the customer) or failed: raises. Finished: the order is
                    # complete, and a cancel request arriving just now cannot undo it.
                    return self._task.result()
                on_cancel_request()

    def cancel(self) -> None:
        self._cancelled = True
        if self._task is not None:
            self._task.cancel()


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


def cancel_requested_in_temporal() -> bool:
    """Whether Temporal asked to cancel this workflow at any point (Web UI, CLI, client).

    Temporal's request cancels the workflow's main task; a customer's cancel only cancels the
    steps. The main task keeps count of its cancel requests even when they are absorbed (while
    compensating, or past the point of no return)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
