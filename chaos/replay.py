"""After the chaos, every saga's history replays against the saga's code, as a worker that
rebuilds a saga (after a restart, an eviction, a query of an ended one) does. A nondeterminism
shows here even when the saga ended well on the worker that first ran it: that is how saga v4's
windows were found wanting (an API read of the ended order answered 500 once, by luck)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from temporalio.client import WorkflowHistory
from temporalio.service import RPCError
from temporalio.worker import Replayer

from cloudmart.contracts.saga import workflow_id
from cloudmart.settings import Settings
from cloudmart.temporal import connect
from workflows.order_saga import OrderSaga


async def replay_each(replayer: Replayer, histories: Mapping[str, WorkflowHistory]) -> list[str]:
    """What went wrong replaying each order's history (empty: every one replayed)."""
    failures = []
    for order_id, history in histories.items():
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        if result.replay_failure is not None:
            failures.append(f"order {order_id}: {result.replay_failure}")
    return failures


async def _replay_failures(settings: Settings, order_ids: Iterable[str]) -> tuple[int, list[str]]:
    client = await connect(settings)
    histories: dict[str, WorkflowHistory] = {}
    unreadable = []
    for order_id in order_ids:
        try:
            histories[order_id] = await client.get_workflow_handle(
                workflow_id(order_id)
            ).fetch_history()
        except RPCError as err:
            unreadable.append(f"order {order_id}: its history could not be read: {err}")
    replayer = Replayer(workflows=[OrderSaga], data_converter=client.data_converter)
    return len(histories), unreadable + await replay_each(replayer, histories)


def replay_failures(settings: Settings, order_ids: Iterable[str]) -> tuple[int, list[str]]:
    """How many histories were replayed, and what went wrong."""
    return asyncio.run(_replay_failures(settings, order_ids))
