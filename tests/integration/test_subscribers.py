"""The subscribers (the projector, loyalty) once they have caught up with the event store: they
read, and write nothing, until events arrive (each write transaction costs the CPU the sagas'
worker shares)."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, event

from services.database import READ_ONLY
from services.factory import Services
from services.loyalty.service import LoyaltyService
from services.readmodel.projector import Projector
from tests.integration.test_loyalty import Orders


@pytest.mark.parametrize("subscriber", ["projector", "loyalty"])
def test_a_subscriber_that_has_caught_up_writes_nothing_until_events_arrive(
    services: Services, subscriber: str
) -> None:
    follower: Projector | LoyaltyService = getattr(services, subscriber)
    assert services.event_store is not None
    orders = Orders(services.event_store)
    orders.completed("c-1", 1_000)
    writes: list[bool] = []

    def on_begin(connection: Connection) -> None:
        writes.append(not connection.get_execution_options().get(READ_ONLY, False))

    event.listen(follower.engine, "begin", on_begin)
    try:
        assert follower.run_once() == 2
        assert writes.count(True) == 1
        for _ in range(3):
            assert follower.run_once() == 0
        assert writes.count(True) == 1  # caught up: reads only
        orders.completed("c-2", 1_000)
        assert follower.run_once() == 2
        assert writes.count(True) == 2
    finally:
        event.remove(follower.engine, "begin", on_begin)
