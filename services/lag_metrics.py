"""What a subscribers process reports beside its work (cloudmart/metrics.py): how many events
each of its subscribers has yet to handle (``cloudmart_subscriber_lag``) and, where it hosts the
projector, how many orders are stuck now (``cloudmart_orders_stuck_now``, from the read side:
the saga's own counter says when they became stuck, this says how many still are)."""

from __future__ import annotations

from typing import Protocol

from temporalio.common import MetricMeter

from cloudmart import metrics
from cloudmart.contracts.orders import OrderStatus
from services.event_store.store import EventStore
from services.readmodel.queries import ReadModel

STUCK = (OrderStatus.COMPENSATION_STUCK, OrderStatus.STEP_STUCK)
EVERY = 5.0
"""Seconds between measurements: a scrape every 15 s or so sees a fresh value."""


class Follower(Protocol):
    store: EventStore

    def position(self) -> int: ...


class LagGauges:
    def __init__(
        self, meter: MetricMeter, subscribers: dict[str, Follower], read: ReadModel | None
    ) -> None:
        self._subscribers = subscribers
        self._read = read
        self._lag = meter.create_gauge(
            metrics.SUBSCRIBER_LAG, "events in the store a subscriber has not handled yet"
        )
        self._stuck = meter.create_gauge(
            metrics.ORDERS_STUCK_NOW, "orders stuck now (the read side's count), by status"
        )

    def measure(self) -> int:
        """Set every gauge; 0, as a subscriber loop's step that found nothing to hurry for."""
        for name, subscriber in self._subscribers.items():
            behind = subscriber.store.head() - subscriber.position()
            self._lag.set(max(behind, 0), {"subscriber": name})
        if self._read is not None:
            for status, count in self._read.count_by_status(STUCK).items():
                self._stuck.set(count, {"status": status.value})
        return 0
