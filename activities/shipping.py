from __future__ import annotations

from temporalio import activity

from activities.failures import failures_for_temporal
from cloudmart.contracts import activities as spec
from cloudmart.contracts.steps import Compensate, CompensationResult, CreateShipment, ShipmentResult
from services.shipping import ShippingService


class ShippingActivities:
    def __init__(self, shipping: ShippingService) -> None:
        self._shipping = shipping

    @activity.defn(name=spec.CREATE_SHIPMENT.name)
    @failures_for_temporal
    def create(self, request: CreateShipment) -> ShipmentResult:
        return self._shipping.create(request.order_id, request.address)

    @activity.defn(name=spec.CANCEL_SHIPMENT.name)
    @failures_for_temporal
    def cancel(self, request: Compensate) -> CompensationResult:
        return self._shipping.cancel(request.order_id, request.reason)

    def all(self) -> list[object]:
        return [self.create, self.cancel]
