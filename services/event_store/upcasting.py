"""Reading old events as current ones: one upcaster per (event type, version) step.

Events are never rewritten in the store; an event stored at version 1 is upcast each time it is
read, step by step, to ``CURRENT_VERSION``. The history of each schema change is here:

- OrderPlaced 1 -> 2: items' ``qty`` became ``quantity``, and the destination ``country``
  (unknown for old events) was added.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cloudmart.contracts.events import CURRENT_VERSION, EventType

Data = dict[str, Any]
Upcaster = Callable[[Data], Data]


def _order_placed_1_to_2(data: Data) -> Data:
    items = [{"sku": i["sku"], "quantity": i["qty"]} for i in data["items"]]
    return {**{k: v for k, v in data.items() if k != "items"}, "items": items, "country": None}


UPCASTERS: dict[tuple[str, int], Upcaster] = {
    (EventType.ORDER_PLACED, 1): _order_placed_1_to_2,
}


def upcast(event_type: str, version: int, data: Data) -> tuple[int, Data]:
    """``data`` at the current version of ``event_type``, and that version."""
    current = CURRENT_VERSION.get(event_type, version)
    while version < current:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise ValueError(f"no upcaster for {event_type} version {version}")
        data = step(data)
        version += 1
    return version, data
