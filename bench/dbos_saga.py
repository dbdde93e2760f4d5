"""The peer baseline: the same order saga written with DBOS Transact, in process, no server.

    make bench-install                             # the bench extra (dbos), once
    python -m bench.dbos_saga --orders 100 --concurrency 1 --concurrency 20
    python -m bench.dbos_saga --postgres           # DBOS's own database on PostgreSQL

DBOS checkpoints each workflow and step in its system database (a SQLite file in the run's
temporary directory, or a PostgreSQL database of the run's own with ``--postgres``). The saga
calls the very service methods our activities call (activities/*.py) on the same kind of
databases (services/factory.py over ``throwaway_settings``: one SQLite file per service):
reserve, fraud screen, charge, ship, commit; on a business failure the compensations (cancel
the shipment, refund, release) run in reverse. Retries as in our saga: a business failure is
final, anything else is retried with backoff. Not the product: ``dbos`` is only in the ``bench``
extra, and nothing outside ``bench/`` imports this module.

What it leaves out, against our saga: no order events (our saga also appends each transition to
the event store), no search attributes, no cancel or payment-review handling.

Rows: ``dbos floor`` (a workflow of 4 no-op steps) and ``dbos saga``, each at every concurrency
given; a workflow is called in a thread of a pool as wide as the concurrency, as a DBOS app with
synchronous service code would run it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import platform
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSConfig
from sqlalchemy import create_engine, make_url, text

from bench.stats import Run, table
from cloudmart.contracts.failures import BusinessFailure
from cloudmart.contracts.orders import OrderItem, ShippingAddress
from cloudmart.contracts.steps import CheckFraud
from cloudmart.process import exit_now
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


@DBOS.step()
def noop() -> None:
    return None


@DBOS.workflow(name="floor")
def floor(steps: int) -> None:
    for _ in range(steps):
        noop()


class DbosPeer:
    """DBOS launched over a fresh set of service databases in ``data_dir``; one per process at
    a time (DBOS is a singleton). ``system_database_url``: DBOS's own database (default: a
    SQLite file in ``data_dir``)."""

    def __init__(self, data_dir: Path, system_database_url: str | None = None) -> None:
        self.settings = throwaway_settings(data_dir)
        self.system_database_url = system_database_url or f"sqlite:///{data_dir / 'dbos.sqlite'}"
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

    async def floor(self, orders: int, concurrency: int, *, name: str = "dbos floor") -> Run:
        return await drive(name, orders, concurrency, lambda _: floor(FLOOR_STEPS))


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
def postgres_system_database() -> Iterator[str]:
    """A PostgreSQL database of the run's own for DBOS's system tables, dropped afterwards."""
    name = f"dbos_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
        yield (
            make_url(POSTGRES_ADMIN_URL)
            .set(drivername="postgresql", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@contextlib.contextmanager
def open_peer(postgres: bool = False) -> Iterator[DbosPeer]:
    """A DbosPeer in a temporary directory (and, with ``postgres``, its system database on
    PostgreSQL); everything removed afterwards."""
    with contextlib.ExitStack() as stack:
        data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cloudmart-dbos-")))
        url = stack.enter_context(postgres_system_database()) if postgres else None
        yield stack.enter_context(DbosPeer(data, url))


async def measure(
    peer: DbosPeer, orders: int, concurrencies: list[int], warmup: int = 20
) -> list[Run]:
    """The DBOS floor and saga at each concurrency, after a warmup of each."""
    subjects: list[Callable[[int, int], Awaitable[Run]]] = [peer.floor, peer.saga]
    for subject in subjects:
        await subject(warmup, max(concurrencies))
    return [await subject(orders, c) for c in concurrencies for subject in subjects]


async def run_dbos_saga_bench(orders: int, concurrency: int, *, postgres: bool = False) -> Run:
    """The DBOS saga alone, in a peer of its own (the main benchmark's row)."""
    with open_peer(postgres) as peer:
        await peer.saga(min(orders, 20), concurrency, name="warmup")
        return await peer.saga(orders, concurrency)


async def run_dbos_floor_bench(orders: int, concurrency: int, *, postgres: bool = False) -> Run:
    """The DBOS floor (4 no-op steps) alone, in a peer of its own."""
    with open_peer(postgres) as peer:
        await peer.floor(min(orders, 20), concurrency, name="warmup")
        return await peer.floor(orders, concurrency)


def report(runs: list[Run], orders: int) -> str:
    rows = [
        [
            run.name,
            str(orders),
            str(run.concurrency),
            f"{run.throughput:.1f}",
            f"{run.p50:.1f}",
            f"{run.percentile(99):.1f}",
        ]
        for run in runs
    ]
    return table(rows, ["row", "N", "C", "per s", "p50 ms", "p99 ms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100)
    parser.add_argument(
        "--concurrency", type=int, action="append", help="repeatable; default: 1 and 20"
    )
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--postgres", action="store_true", help="DBOS's system database on local PostgreSQL"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    concurrencies = args.concurrency or [1, 20]
    with open_peer(args.postgres) as peer:
        runs = asyncio.run(measure(peer, args.orders, concurrencies, args.warmup))
    system = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"DBOS Transact, system database on {system}; service databases on SQLite; "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {platform.system()}"
    )
    print(report(runs, args.orders))


if __name__ == "__main__":
    main()
    exit_now(0)
