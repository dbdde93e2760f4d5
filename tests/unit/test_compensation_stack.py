"""The compensation stack's building blocks, in plain asyncio."""

from __future__ import annotations

import asyncio

import pytest

from cloudmart.contracts import activities as act
from workflows.cancellation import uninterruptible
from workflows.compensations import CompensationStack


def test_compensations_unwind_last_pushed_first() -> None:
    stack = CompensationStack()
    for compensation in (act.RELEASE_INVENTORY, act.REFUND_PAYMENT, act.CANCEL_SHIPMENT):
        stack.push(compensation)
    assert [c.name for c in stack.in_undo_order()] == [
        "shipping.cancel",
        "payment.refund",
        "inventory.release",
    ]


async def test_work_survives_a_cancel_of_its_caller() -> None:
    release = asyncio.Event()

    async def work() -> str:
        await release.wait()
        return "undone"

    caller = asyncio.create_task(uninterruptible(work()))
    await asyncio.sleep(0)
    caller.cancel()  # e.g. a second cancel request while compensating
    await asyncio.sleep(0)
    release.set()
    assert await caller == "undone"


async def test_finished_work_keeps_its_result_when_the_cancel_lands_before_the_caller_resumes() -> (
    None
):
    async def work() -> int:
        return 42

    caller = asyncio.create_task(uninterruptible(work()))
    await asyncio.sleep(0)  # the caller starts the work and awaits it
    await asyncio.sleep(0)  # the work finishes; the caller has not resumed yet
    caller.cancel()
    assert await caller == 42


async def test_work_that_fails_reports_its_error() -> None:
    async def work() -> None:
        raise ValueError("compensation failed")

    with pytest.raises(ValueError, match="compensation failed"):
        await uninterruptible(work())
