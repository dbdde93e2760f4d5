from __future__ import annotations

from temporalio import activity

from activities.failures import failures_for_temporal
from cloudmart.contracts import activities as spec
from cloudmart.contracts.steps import (
    Compensate,
    CompensationResult,
    CustomerChecked,
    EnsureCustomer,
)
from services.customers import CustomersService


class CustomersActivities:
    def __init__(self, customers: CustomersService) -> None:
        self._customers = customers

    @activity.defn(name=spec.ENSURE_CUSTOMER.name)
    @failures_for_temporal
    def ensure(self, request: EnsureCustomer) -> CustomerChecked:
        return self._customers.ensure(request)

    @activity.defn(name=spec.CANCEL_USER.name)
    @failures_for_temporal
    def cancel_user(self, request: Compensate) -> CompensationResult:
        return self._customers.cancel_user(request.order_id, request.reason)

    def all(self) -> list[object]:
        return [self.ensure, self.cancel_user]
