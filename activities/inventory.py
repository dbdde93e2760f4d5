from __future__ import annotations

from temporalio import activity

from activities.failures import failures_for_temporal
from cloudmart.contracts import activities as spec
from cloudmart.contracts.steps import (
    CommitInventory,
    Compensate,
    CompensationResult,
    Reservation,
    ReserveInventory,
)
from services.inventory import InventoryService


class InventoryActivities:
    def __init__(self, inventory: InventoryService) -> None:
        self._inventory = inventory

    @activity.defn(name=spec.RESERVE_INVENTORY.name)
    @failures_for_temporal
    def reserve(self, request: ReserveInventory) -> Reservation:
        return self._inventory.reserve(request.order_id, request.items)

    @activity.defn(name=spec.RELEASE_INVENTORY.name)
    @failures_for_temporal
    def release(self, request: Compensate) -> CompensationResult:
        return self._inventory.release(request.order_id, request.reason)

    @activity.defn(name=spec.COMMIT_INVENTORY.name)
    @failures_for_temporal
    def commit(self, request: CommitInventory) -> Reservation:
        return self._inventory.commit(request.order_id)

    def all(self) -> list[object]:
        return [self.reserve, self.release, self.commit]
