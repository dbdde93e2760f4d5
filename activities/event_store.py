from __future__ import annotations

from temporalio import activity

from activities.failures import failures_for_temporal
from cloudmart.contracts import activities as spec
from cloudmart.contracts.events import Appended, AppendEvents
from services.event_store.store import EventStore


class EventStoreActivities:
    """The order event store's activity: the orchestrator hosts the store (same worker, same
    task queue as the saga)."""

    def __init__(self, store: EventStore) -> None:
        self._store = store

    @activity.defn(name=spec.APPEND_EVENTS.name)
    @failures_for_temporal
    def append(self, request: AppendEvents) -> Appended:
        return Appended(appended=self._store.append(request.events))

    def all(self) -> list[object]:
        return [self.append]
