"""An order as it stood at a point of its past: the aggregate's fold over its events up to then.

Pure, like the fold itself: the same events and the same point always give the same answer, so
the state of an order a year ago is as reproducible as its state now.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import takewhile
from typing import Literal, TypeVar

from pydantic import BaseModel

from cloudmart.contracts.events import Event
from services.event_store.aggregate import Order, replay

AsOf = int | datetime | None
"""A sequence number (the events numbered up to it), an aware time (the events that occurred at
or before it), or None (every event)."""

E = TypeVar("E", bound=Event)


def events_as_of(events: Sequence[E], as_of: AsOf) -> list[E]:
    """The first events of ``events`` (oldest first) that fall at or before ``as_of``.

    A prefix, never a filter: the state after an event is defined only by the events before it,
    so the first event past the point ends the story even if a later one were timed earlier
    (the saga's clock does not go back, but a fold of a non-prefix would be a state the order
    never had)."""
    if as_of is None:
        return list(events)
    if isinstance(as_of, datetime):
        moment = as_of
        return list(takewhile(lambda e: e.occurred_at <= moment, events))
    return list(takewhile(lambda e: e.sequence <= as_of, events))


class OrderAsOf(BaseModel):
    """The answer of ``GET /orders/{id}/state``: what the event store knew of the order then."""

    order_id: str
    source: Literal["event_store"] = "event_store"
    """Always the event store, never the live saga: this is the fold of the stored events."""
    as_of: datetime | int | None
    """The point asked for (a time in UTC, or a sequence number); None for every event."""
    sequence: int
    """The sequence number of the last event folded; 0 if none was."""
    occurred_at: datetime | None
    """When that event occurred; None if none was folded."""
    state: Order | None
    """The folded order; None when no event of it had been stored by then: ``as_of`` is before
    it was placed, or its saga has not stored its first events yet."""


def order_as_of(order_id: str, events: Sequence[Event], as_of: AsOf) -> OrderAsOf:
    """The order folded from ``events`` (its whole stream, oldest first) up to ``as_of``."""
    folded = events_as_of(events, as_of)
    last = folded[-1] if folded else None
    return OrderAsOf(
        order_id=order_id,
        as_of=as_of,
        sequence=last.sequence if last else 0,
        occurred_at=last.occurred_at if last else None,
        state=replay(order_id, folded) if folded else None,
    )
