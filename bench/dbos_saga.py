"""The peer baseline: the same order saga written with DBOS Transact, in process, no server.

``make bench`` runs it beside our saga (bench/saga_vs_floor.py); ``make bench-install`` adds the
``bench`` extra (dbos) once. DBOS checkpoints each workflow and step in its system database (a
SQLite file in the run's temporary directory). The saga calls the very service methods our
activities call (activities/*.py) on the same kind of databases (services/factory.py over
``throwaway_settings``: one SQLite file per service): reserve, fraud screen, charge, ship,
commit; on a business failure the compensations (cancel the shipment, refund, release) run in
reverse. Retries as in our saga: a business failure is final, anything else is retried with
backoff. Not the product: ``dbos`` is only in the ``bench`` extra, and nothing outside
``bench/`` imports this module.

What it leaves out, against our saga: no order events (our saga also appends each transition to
the event store), no search attributes, no cancel or payment-review handling. A workflow is
called in a thread of a pool as wide as the concurrency, as a DBOS app with synchronous service
code would run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSConfig

from bench.stats import Run
from cloudmart.contracts.failures import BusinessFailure
from cloudmart.contracts.orders import OrderItem, ShippingAddress
from cloudmart.contracts.steps import CheckFraud
from cloudmart.settings import SERVICES
from devstack.stack import throwaway_settings
from services.factory import Services, open_services, prepare
from services.inventory.catalog import DEMO_CATALOG

FLOOR_STEPS = 4
SKUS = [p.sku for p in DEMO_CATALOG if p.stock >= 100]
POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ADDRESS = ShippingAddress(
    name="Bench", line1="1 Main St", city="Utrecht", postal_code="3511", country="NL"
)

_services: Services | None = None
"""The services the saga's steps call: set while a peer is open (DBOS steps are plain module
functions, registered once per process)."""


def _hosted() -> Services:
    assert _services is not None, "open a DbosPeer first"
    return _services


def _transient(error: BaseException) -> bool:
    """Like our activities: a service's business failure is final, anything else is retried."""
    return not isinstance(error, BusinessFailure)


# Our STEP_RETRY / UNDO_RETRY: 1 s, doubling; no practical attempt limit.
RETRY: dict[str, Any] = {
    "retries_allowed": True,
    "interval_seconds": 1.0,
    "backoff_rate": 2.0,
    "max_attempts": 1000,
    "should_retry": _transient,
}


@DBOS.step(**RETRY)
def reserve(order_id: str, items: list[OrderItem]) -> int:
    inventory = _hosted().inventory
    assert inventory is not None
    return inventory.reserve(order_id, items).total_cents


@DBOS.step(**RETRY)
def check_fraud(order_id: str, customer_id: str, token: str, amount_cents: int) -> None:
    payment = _hosted().payment
    assert payment is not None
    payment.check_fraud(
        CheckFraud(
            order_id=order_id,
            customer_id=customer_id,
            payment_token=token,
            amount_cents=amount_cents,
            country=ADDRESS.country,
        )
    )


@DBOS.step(**RETRY)
def charge(order_id: str, customer_id: str, token: str, amount_cents: int) -> None:
    payment = _hosted().payment
    assert payment is not None
    payment.charge(order_id, customer_id, token, amount_cents)


@DBOS.step(**RETRY)
def create_shipment(order_id: str) -> str:
    shipping = _hosted().shipping
    assert shipping is not None
    return shipping.create(order_id, ADDRESS).tracking_number


@DBOS.step(**RETRY)
def commit(order_id: str) -> None:
    inventory = _hosted().inventory
    assert inventory is not None
    inventory.commit(order_id)


@DBOS.step(**RETRY)
def release(order_id: str, reason: str) -> None:
    inventory = _hosted().inventory
    assert inventory is not None
    inventory.release(order_id, reason)


@DBOS.step(**RETRY)
def refund(order_id: str, reason: str) -> None:
    payment = _hosted().payment
    assert payment is not None
    payment.refund(order_id, reason)


@DBOS.step(**RETRY)
def cancel_shipment(order_id: str, reason: str) -> None:
    shipping = _hosted().shipping
    assert shipping is not None
    shipping.cancel(order_id, reason)


@DBOS.workflow(name="order_saga")
def order_saga(order_id: str, customer_id: str, sku: str, token: str) -> str:
    """Our saga's steps and compensation stack, as a DBOS workflow; returns the final status."""
    undo: list[Callable[[str, str], None]] = []
    try:
        undo.append(release)  # pushed before its step, as in our saga
        total = reserve(order_id, [OrderItem(sku=sku, quantity=1)])
        check_fraud(order_id, customer_id, token, total)
        undo.append(refund)
        charge(order_id, customer_id, token, total)
        undo.append(cancel_shipment)
        create_shipment(order_id)
        commit(order_id)
    except BusinessFailure as failure:
        reason = f"{failure.type_name()}: {failure}"
        for compensation in reversed(undo):
            compensation(order_id, reason)
        return "FAILED"
    return "COMPLETED"


class DbosPeer:
    """DBOS launched over a fresh set of service databases in ``data_dir``, its own system
    database a SQLite file there too; one per process at a time (DBOS is a singleton)."""

    def __init__(self, data_dir: Path) -> None:
        self.settings = throwaway_settings(data_dir)
        self.system_database_url = f"sqlite:///{data_dir / 'dbos.sqlite'}"
        self.services: Services | None = None

    def __enter__(self) -> DbosPeer:
        global _services
        if _services is not None:
            raise RuntimeError("a DbosPeer is open already (DBOS is one per process)")
        services = open_services(self.settings, SERVICES)
        for service in services.hosted():
            prepare(service, self.settings)  # migrations and the demo catalog
        self.services = _services = services
        config: DBOSConfig = {
            "name": "cloudmart-bench",
            "system_database_url": self.system_database_url,
            "log_level": "WARNING",
        }
        DBOS(config=config)
        DBOS.launch()
        return self

    def __exit__(self, *_: object) -> None:
        global _services
        DBOS.destroy(destroy_registry=False)  # the module's workflows stay registered
        if self.services is not None:
            self.services.dispose()
        self.services = _services = None

    async def saga(self, orders: int, concurrency: int, *, name: str = "dbos saga") -> Run:
        def one(n: int) -> None:
            status = order_saga(str(uuid.uuid4()), "bench", SKUS[n % len(SKUS)], "tok_ok")
            if status != "COMPLETED":
                raise RuntimeError(f"bench order ended {status}")

        return await drive(name, orders, concurrency, one)


async def drive(name: str, count: int, concurrency: int, one: Callable[[int], None]) -> Run:
    """Run ``one(n)`` for n < count, at most ``concurrency`` at a time, each in its own thread."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    with ThreadPoolExecutor(concurrency, thread_name_prefix="dbos-bench") as pool:

        async def timed(n: int) -> None:
            async with gate:
                started = time.perf_counter()
                await loop.run_in_executor(pool, one, n)
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(timed(n) for n in range(count)))
    return Run(name, concurrency, latencies, time.perf_counter() - started)


@contextlib.contextmanager
def open_peer() -> Iterator[DbosPeer]:
    """A DbosPeer in a temporary directory, removed afterwards."""
    with (
        tempfile.TemporaryDirectory(prefix="cloudmart-dbos-") as data,
        DbosPeer(Path(data)) as peer,
    ):
        yield peer


async def run_dbos_saga_bench(orders: int, concurrency: int) -> Run:
    """The DBOS saga, in a peer of its own (make bench's row)."""
    with open_peer() as peer:
        await peer.saga(min(orders, 20), concurrency, name="warmup")
        return await peer.saga(orders, concurrency)
