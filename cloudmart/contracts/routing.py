"""Where each service's work is sent: one task queue per service."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class TaskQueues(BaseModel):
    """The task queues of one deployment.

    The starter puts them in the saga's input, so the workflow routes each step to its service
    deterministically, and several deployments can share one namespace.
    """

    model_config = ConfigDict(frozen=True)

    orders: str
    customers: str | None = None
    """None in the inputs of sagas started before the customers step (they never call it)."""
    inventory: str
    payment: str
    shipping: str

    @classmethod
    def with_prefix(cls, prefix: str) -> TaskQueues:
        return cls(
            orders=f"{prefix}-orders",
            customers=f"{prefix}-customers",
            inventory=f"{prefix}-inventory",
            payment=f"{prefix}-payment",
            shipping=f"{prefix}-shipping",
        )

    def for_service(self, service: str) -> str:
        queue = getattr(self, service)
        if queue is None:
            raise ValueError(f"no task queue for {service} in this saga's input")
        return queue
