"""Live order pages without a query per viewer.

Every open page of an order follows one watch of that order in this process: the watch asks
the saga for its state (a Temporal query) and the event store for the order's events once per
``interval``, whatever the number of viewers, and pushes a snapshot to each viewer only when
something changed. Once the order has ended it is asked nothing more: its last snapshot is the
final one. So fifty pages open on one order cost the saga what one page costs, and fifty pages
on fifty ended orders cost it nothing.

An order that is not changing (held for a payment review, stuck waiting for an operator) is
asked less and less often, the pause doubling up to ``slowest``; the first change brings it back
to ``interval``. Fifty pages open on fifty held orders measurably slowed the other sagas while
each was asked twice a second (docs/performance.md); a held order's page now shows a decision
within ``slowest`` seconds, and a running one its steps within ``interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from cloudmart import tracing

log = logging.getLogger("cloudmart.console")


@dataclass(frozen=True)
class Snapshot:
    order: dict[str, Any]
    """The order's state (``OrderView`` as JSON)."""
    events: list[dict[str, Any]]
    """Its stored events, oldest first."""

    @property
    def ended(self) -> bool:
        return self.order.get("status") in {"COMPLETED", "FAILED", "CANCELLED"}


Fetch = Callable[[str], Awaitable[Snapshot]]


CLOSED = None
"""What a viewer's queue receives when the feed closes: its stream ends."""


@dataclass
class _Watch:
    viewers: set[asyncio.Queue[Snapshot | None]] = field(default_factory=set)
    last: Snapshot | None = None
    task: asyncio.Task[None] | None = None


class OrderFeed:
    def __init__(
        self, fetch: Fetch, interval: float = 0.5, slowest: float = 4.0, jitter: float = 0.25
    ) -> None:
        self._fetch = fetch
        self.interval = interval
        self.slowest = max(slowest, interval)
        self.jitter = jitter
        """Each pause is longer or shorter by up to this fraction, at random: pages opened
        together would otherwise keep asking together, a burst of queries every few seconds
        that delays whatever saga runs at that moment."""
        self._watches: dict[str, _Watch] = {}
        self.fetches = 0
        """How many times an order was asked for (what the load of open pages costs)."""

    @property
    def watched(self) -> int:
        return len(self._watches)

    async def follow(self, order_id: str) -> AsyncIterator[Snapshot]:
        """The order's snapshots as they change, starting with its current one; ends after the
        snapshot in which the order has ended."""
        watch = self._watches.setdefault(order_id, _Watch())
        queue: asyncio.Queue[Snapshot | None] = asyncio.Queue(maxsize=1)
        watch.viewers.add(queue)
        if watch.last is not None:
            queue.put_nowait(watch.last)
        if watch.task is None:
            # Its own context, not the first viewer's: the watch outlives that request, and
            # under tracing would keep adding spans to its trace. Nor is each poll a trace.
            watch.task = asyncio.create_task(self._run(order_id, watch), context=tracing.untraced())
        try:
            while True:
                snapshot = await queue.get()
                if snapshot is CLOSED:
                    return
                yield snapshot
                if snapshot.ended:
                    return
        finally:
            watch.viewers.discard(queue)
            if not watch.viewers:
                self._stop(order_id, watch)

    def _stop(self, order_id: str, watch: _Watch) -> None:
        if self._watches.get(order_id) is watch:
            del self._watches[order_id]
        if watch.task is not None:
            watch.task.cancel()

    async def _run(self, order_id: str, watch: _Watch) -> None:
        pause = self.interval
        while watch.viewers:
            try:
                self.fetches += 1
                snapshot = await self._fetch(order_id)
            except Exception as err:  # a viewer keeps the last snapshot; the next round retries
                log.info("order %s: live update failed: %s", order_id, err)
            else:
                if snapshot != watch.last:
                    watch.last = snapshot
                    pause = self.interval
                    for queue in watch.viewers:
                        _replace(queue, snapshot)
                else:
                    pause = min(pause * 2, self.slowest)
                if snapshot.ended:
                    return  # asked nothing more; the watch ends with its last viewer
            await asyncio.sleep(pause * random.uniform(1 - self.jitter, 1 + self.jitter))

    async def close(self) -> None:
        """Stop every watch and end every viewer's stream (the API is shutting down)."""
        tasks = []
        for order_id, watch in list(self._watches.items()):
            for queue in watch.viewers:
                _replace(queue, CLOSED)
            self._stop(order_id, watch)
            if watch.task is not None:
                tasks.append(watch.task)
        # Cancelled tasks end with CancelledError, which gather returns; a cancel of close()
        # itself still reaches its caller.
        await asyncio.gather(*tasks, return_exceptions=True)


def _replace(queue: asyncio.Queue[Snapshot | None], snapshot: Snapshot | None) -> None:
    """A slow viewer gets the newest snapshot, never a backlog of old ones."""
    with contextlib.suppress(asyncio.QueueEmpty):
        queue.get_nowait()
    queue.put_nowait(snapshot)
