"""Traces across the processes `make up` runs (cloudmart/tracing.py), configured as an operator
would, by ``OTEL_EXPORTER_OTLP_ENDPOINT``, exporting to a collector in this test: one order's
trace goes from the API's process through the saga's worker to the subscribers' projector, each
process under its own service name; the saga's log line carries the trace id; every process
still stops cleanly (its last spans flushed)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx

from devstack.stack import DevStack, settings_env, throwaway_settings
from tests.support import OtlpCollector

ORDER = {
    "customer_id": "c-42",
    "items": [{"sku": "LAMP-LED-01", "quantity": 1}],
    "payment_token": "tok_ok",
    "shipping_address": {
        "name": "Ada Lovelace",
        "line1": "Hauptstr. 1",
        "city": "Berlin",
        "postal_code": "10115",
        "country": "JP",  # refused by shipping: compensated
    },
}


def test_one_orders_trace_crosses_the_api_the_saga_and_the_projector(tmp_path: Path) -> None:
    settings = throwaway_settings(tmp_path, task_queue_prefix=f"otel-{uuid.uuid4().hex[:6]}")
    with OtlpCollector() as collector:
        # Exported every 100 ms rather than every 5 s, for the test's sake.
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        stack = DevStack(settings, settings_env(settings) | env, output=None, persist=False)
        stack.start()
        try:
            with httpx.Client(base_url=stack.api_url, timeout=60) as api:
                placed = api.post("/orders", params={"wait": 30}, json=ORDER)
            assert placed.status_code == 202 and placed.json()["state"]["status"] == "FAILED"
            order_id = placed.json()["order_id"]
            deadline = time.monotonic() + 20
            while not any(s.name == "projector.project" for _, s in collector.spans()):
                assert time.monotonic() < deadline, "the projection's span never arrived"
                time.sleep(0.1)
            saga_log = list(stack.processes["worker"].tail)
        finally:
            statuses = stack.stop()
    assert set(statuses.values()) == {0}, statuses

    spans = collector.spans()
    [(_, request)] = [(n, s) for n, s in spans if n == "cloudmart-api" and s.name == "POST /orders"]
    trace_id = request.trace_id
    in_trace = {(name, s.name) for name, s in spans if s.trace_id == trace_id}
    assert {
        ("cloudmart-api", "StartWorkflow:OrderSaga"),
        ("cloudmart-saga", "RunWorkflow:OrderSaga"),
        ("cloudmart-saga", "RunActivity:shipping.create"),
        ("cloudmart-saga", "RunActivity:payment.refund"),
        ("cloudmart-saga", "transaction"),
        ("cloudmart-saga", "event_store.append"),
        ("cloudmart-subscribers", "projector.project"),
    } <= in_trace
    appends = {s.span_id for n, s in spans if s.name == "event_store.append"}
    projected = [s for n, s in spans if s.name == "projector.project"]
    assert all(s.trace_id == trace_id and s.parent_span_id in appends for s in projected)
    ended = [line for line in saga_log if f"Order {order_id} is FAILED" in line]
    assert ended and ended[-1].endswith(f" trace_id={trace_id.hex()}")
