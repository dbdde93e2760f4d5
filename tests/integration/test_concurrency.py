"""Many sagas racing for little stock: exactly the stock is sold, and the books balance."""

from __future__ import annotations

import asyncio
from collections import Counter

from temporalio.client import Client

from cloudmart.contracts.orders import OrderStatus
from cloudmart.settings import Settings
from services.factory import Services
from tests.support import assert_books_balance, assert_reconciled, new_saga_input, stock
from tests.workflows.saga_helpers import outcome, start


async def test_fifty_orders_race_for_ten_units(
    client: Client, settings: Settings, workers: Services
) -> None:
    lowest_seen = 10
    done = asyncio.Event()

    async def watch_stock() -> None:
        nonlocal lowest_seen
        while not done.is_set():
            on_hand, _ = (await asyncio.to_thread(stock, workers))["RACE-10"]
            lowest_seen = min(lowest_seen, on_hand)
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch_stock())
    sagas = [new_saga_input(settings, (("RACE-10", 1),)) for _ in range(50)]
    handles = await asyncio.gather(*(start(client, saga) for saga in sagas))
    states = await asyncio.gather(*(outcome(handle) for handle in handles))
    done.set()
    await watcher

    outcomes = Counter((s.status, s.failure.type if s.failure else None) for s in states)
    assert outcomes == {
        (OrderStatus.COMPLETED, None): 10,
        (OrderStatus.FAILED, "OutOfStock"): 40,
    }
    assert stock(workers)["RACE-10"] == (0, 0)
    assert lowest_seen >= 0
    assert_books_balance(
        workers, [s.total_cents or 0 for s in states if s.status is OrderStatus.COMPLETED]
    )
    books = assert_reconciled(workers, states)
    assert books.units_sold == 10


async def test_racing_orders_with_mixed_outcomes_keep_the_books_balanced(
    client: Client, settings: Settings, workers: Services
) -> None:
    tokens = ["tok_ok", "tok_decline", "tok_flaky", "tok_ok"]
    countries = ["DE", "FR", "JP", "US", "NL"]
    sagas = [
        new_saga_input(
            settings, (("RACE-10", 1), ("SKU-B", 2)), token=tokens[i % 4], country=countries[i % 5]
        )
        for i in range(30)
    ]
    handles = await asyncio.gather(*(start(client, saga) for saga in sagas))
    states = await asyncio.gather(*(outcome(handle) for handle in handles))

    completed = [s for s in states if s.status is OrderStatus.COMPLETED]
    assert 0 < len(completed) <= 10
    assert all(s.status in (OrderStatus.COMPLETED, OrderStatus.FAILED) for s in states)
    on_hand, reserved = stock(workers)["RACE-10"]
    assert on_hand == 10 - len(completed) and reserved == 0
    assert_books_balance(workers, [s.total_cents or 0 for s in completed])
    assert_reconciled(workers, states)
