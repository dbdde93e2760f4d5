"""Helpers shared by the tests: a small catalog, order builders, a gate, the books, processes, a
trace collector."""

from __future__ import annotations

import asyncio
import base64
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from cloudmart.codec import parse_payload_keys
from cloudmart.contracts.customers import Guest
from cloudmart.contracts.orders import (
    OrderItem,
    OrderSagaInput,
    OrderState,
    PlaceOrder,
    ShippingAddress,
    saga_input,
)
from cloudmart.settings import Settings
from cloudmart.temporal import encrypted_converter
from devstack.processes import API_READY, ManagedProcess
from devstack.stack import settings_env
from services.database import create_db_engine
from services.factory import Services
from services.inventory.catalog import ProductSeed
from services.migrations import MIGRATED, upgrade
from services.payment import SimulatedProvider
from services.reconcile import Books, reconcile

CATALOG = (
    ProductSeed(sku="SKU-A", name="Widget A", category="widgets", price_cents=1000, stock=100),
    ProductSeed(sku="SKU-B", name="Widget B", category="widgets", price_cents=2500, stock=50),
    ProductSeed(sku="LAST-ONE", name="The last one", category="rare", price_cents=9900, stock=1),
    ProductSeed(sku="RACE-10", name="Ten in stock", category="rare", price_cents=500, stock=10),
)
INITIAL_STOCK = {p.sku: p.stock for p in CATALOG}

TEST_PAYLOAD_KEYS = "test-1:" + base64.b64encode(bytes(range(32))).decode()
"""The tests' payload key: every test's Temporal client encrypts, as in production. Fixed (and
public, so worthless as a secret) because histories recorded by the tests are kept as fixtures
(tests/histories/) and must decrypt in every later run."""
TEST_CONVERTER = encrypted_converter(parse_payload_keys(TEST_PAYLOAD_KEYS))


def address(country: str = "DE") -> ShippingAddress:
    return ShippingAddress(
        name="Ada Lovelace",
        line1="Hauptstr. 1",
        city="Berlin",
        postal_code="10115",
        country=country,
    )


def place_order(
    items: tuple[tuple[str, int], ...] = (("SKU-A", 2),),
    *,
    token: str = "tok_ok",
    country: str = "DE",
    customer_id: str = "c-42",
    guest: Guest | None = None,
) -> PlaceOrder:
    """Customer ``customer_id``'s order, or with ``guest`` a guest checkout."""
    return PlaceOrder(
        customer_id=None if guest else customer_id,
        guest=guest,
        items=[OrderItem(sku=sku, quantity=quantity) for sku, quantity in items],
        payment_token=token,
        shipping_address=address(country),
    )


def new_saga_input(
    settings: Settings,
    items: tuple[tuple[str, int], ...] = (("SKU-A", 2),),
    *,
    token: str = "tok_ok",
    country: str = "DE",
    review_timeout: timedelta = timedelta(hours=24),
    guest: Guest | None = None,
) -> OrderSagaInput:
    return saga_input(
        str(uuid.uuid4()),
        place_order(items, token=token, country=country, guest=guest),
        payment_review_timeout=review_timeout,
        task_queues=settings.task_queues,
    )


class Gate:
    """Holds a service call at its start until opened, so a test can act at that moment."""

    def __init__(self) -> None:
        self._entered = threading.Event()
        self._open = threading.Event()

    def pass_(self) -> None:
        self._entered.set()
        if not self._open.wait(timeout=30):
            raise TimeoutError("gate was never opened")

    def wait_entered(self, timeout: float = 10) -> None:
        if not self._entered.wait(timeout):
            raise TimeoutError("nothing reached the gate")

    async def entered(self) -> None:
        await asyncio.to_thread(self.wait_entered)

    def open(self) -> None:
        self._open.set()


def stock(services: Services) -> dict[str, tuple[int, int]]:
    """(on hand, reserved) per sku."""
    assert services.inventory is not None
    return {p.sku: (p.stock_on_hand, p.reserved) for p in services.inventory.list_products()}


def assert_books_balance(services: Services, completed_totals: list[int]) -> None:
    """Charged minus refunded equals the completed orders' total; no stock is left reserved."""
    assert services.payment is not None and services.inventory is not None
    totals = services.payment.totals()
    assert totals.net_cents == sum(completed_totals), totals
    for sku, (on_hand, reserved) in stock(services).items():
        assert on_hand >= 0, sku
        assert reserved == 0, f"{sku}: {reserved} unit(s) still reserved after every saga ended"


def reconcile_services(services: Services, orders: list[OrderState]) -> tuple[Books, list[str]]:
    assert services.inventory and services.payment and services.shipping
    assert isinstance(services.payment.provider, SimulatedProvider)
    return reconcile(
        orders,
        inventory=services.inventory.engine,
        payment=services.payment.engine,
        shipping=services.shipping.engine,
        provider=services.payment.provider.engine,
        initial_stock=INITIAL_STOCK,
    )


def assert_reconciled(services: Services, orders: list[OrderState]) -> Books:
    """Every unit and every cent of these orders accounted for across the three services."""
    books, problems = reconcile_services(services, orders)
    assert problems == []
    return books


def operator_headers(settings: Settings) -> dict[str, str]:
    """What an operator action sends: the stack's operator token as a bearer token."""
    assert settings.operator_token is not None
    return {"Authorization": f"Bearer {settings.operator_token.get_secret_value()}"}


@contextmanager
def api_process(settings: Settings) -> Iterator[httpx.Client]:
    """``python -m api`` with ``settings``, and an HTTP client for it; it must stop with 0."""
    api = start_api(settings)
    try:
        api.wait_ready(30)
        with httpx.Client(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=20) as client:
            yield client
    finally:
        assert api.stop() == 0, api.failure("did not exit 0")


def start_api(settings: Settings) -> ManagedProcess:
    """``python -m api`` with ``settings``, started; ready once it listens (``wait_ready``)."""
    return ManagedProcess.start(
        "api",
        [sys.executable, "-m", "api"],
        env=settings_env(settings),
        output=None,
        ready_marker=API_READY,
    )


def migrate(settings: Settings) -> None:
    """Every database at head, as the workers leave them."""
    for name in MIGRATED:
        engine = create_db_engine(settings.db_url(name), pool_size=1)
        upgrade(name, engine)
        engine.dispose()


@contextmanager
def worker_process(settings: Settings, *args: str) -> Iterator[ManagedProcess]:
    """``python -m worker`` with ``settings``, ready; on exit it is stopped and must exit 0."""
    worker = ManagedProcess.start(
        "worker",
        [sys.executable, "-m", "worker", *args],
        env=settings_env(settings),
        output=None,
        ready_marker="worker ready",
    )
    try:
        worker.wait_ready(30)
        yield worker
    finally:
        assert worker.stop() == 0, worker.failure("did not exit 0")


class OtlpCollector:
    """An OTLP/HTTP trace receiver on a free local port, serving in a thread: what a process
    whose ``OTEL_EXPORTER_OTLP_ENDPOINT`` is ``endpoint`` exports (cloudmart/tracing.py)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, bytes]] = []
        """Each request: its path, content type and body."""
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                collector.received.append((self.path, self.headers["Content-Type"], body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> OtlpCollector:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def spans(self) -> list[tuple[str, Span]]:
        """Every span received, with the ``service.name`` of the process that sent it."""
        found = []
        for _, _, body in list(self.received):
            for resource in ExportTraceServiceRequest.FromString(body).resource_spans:
                named = {a.key: a.value.string_value for a in resource.resource.attributes}
                for scope in resource.scope_spans:
                    found.extend((named["service.name"], span) for span in scope.spans)
        return found
