"""What tracing costs the sagas: every process exporting its spans over OTLP, against none.

    python -m bench.tracing_overhead [--orders 100]

Two stacks side by side, each its own dev server, workers and API: one whose processes have
``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a collector in this process (it accepts
``POST /v1/traces`` and counts the spans, nothing more), one with tracing off, ``make up``'s
default. Orders go through each API's ``POST /orders?wait=``, the two taking turns, one at a
time, then at concurrency 10 in alternating blocks (as bench/observability.py does for metrics).
Its cost is measured and stated, not held to a goal (tracing is off unless configured;
docs/performance.md). The spans counted per order say what was exported, by service.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.drivers import stock_bench_skus
from bench.observability import HEADERS, WARM_UP, _in_blocks, _one_at_a_time, _rows
from bench.results import add_results_option, publish
from bench.saga_vs_floor import STOCK
from bench.stats import table
from cloudmart.process import exit_now
from devstack.stack import DevStack, settings_env, throwaway_settings

ON, OFF = "tracing on (OTLP/HTTP)", "tracing off (make up's default)"


class Collector(BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP trace exports; counts their spans by service."""

    spans: Counter[str] = Counter()
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        exported = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            for resource in exported.resource_spans:
                attributes = {a.key: a.value.string_value for a in resource.resource.attributes}
                count = sum(len(scope.spans) for scope in resource.scope_spans)
                self.spans[attributes.get("service.name", "?")] += count
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def collector() -> Iterator[str]:
    """A collector on a free port, serving in a thread; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def start_stack(data: Path, env: dict[str, str]) -> DevStack:
    settings = throwaway_settings(
        data, task_queue_prefix=f"b-{uuid.uuid4().hex[:6]}", seed_demo_catalog=False
    )
    stock_bench_skus(settings, STOCK)
    stack = DevStack(settings, settings_env(settings) | env, output=None, persist=True)
    stack.start()
    return stack


async def measure(on: DevStack, off: DevStack, orders: int) -> str:
    async with (
        httpx.AsyncClient(base_url=on.api_url, timeout=120) as traced,
        httpx.AsyncClient(base_url=off.api_url, timeout=120) as untraced,
    ):
        apis = {ON: traced, OFF: untraced}
        serial = await _one_at_a_time(apis, orders)
        blocks = await _in_blocks(apis, orders)
    placed = WARM_UP + sum(len(run.latencies_ms) for run in serial + blocks if run.name == ON)
    return "\n".join(
        [
            "tracing on against off: POST /orders?wait= to each stack's API, the two taking",
            "turns (one at a time: order by order; at C=10: block by block)",
            table(_rows(serial) + _rows(blocks), HEADERS),
            "",
            f"spans exported per order, by service ({placed} orders, the warm-up's included)",
            table(
                [[name, f"{n / placed:.1f}"] for name, n in sorted(Collector.spans.items())],
                ["service", "spans/order"],
            ),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100, help="orders per row")
    add_results_option(parser)
    args = parser.parse_args()
    with (
        collector() as endpoint,
        tempfile.TemporaryDirectory(prefix="cloudmart-trace-on-") as on_data,
        tempfile.TemporaryDirectory(prefix="cloudmart-trace-off-") as off_data,
    ):
        on = start_stack(Path(on_data), {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
        off = start_stack(Path(off_data), {"OTEL_SDK_DISABLED": "true"})
        try:
            text = asyncio.run(measure(on, off, args.orders))
        finally:
            on.stop()  # the traced processes flush their last spans as they stop
            off.stop()
    print(text)
    print(f"written: {publish('tracing', text, args.results)}")


if __name__ == "__main__":
    main()
    exit_now(0)
