"""Tracing's switch and parts (cloudmart/tracing.py): off, and nothing installed, unless the
standard variables ask for it; a process they configure exports over OTLP/HTTP, as the service it
names, even when it ends with ``os._exit``; log lines carry the trace id; the API's request
spans (tests/integration/test_tracing.py follows a whole order)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from api.console.feed import OrderFeed, Snapshot
from api.main import create_app
from cloudmart import tracing
from tests.support import OtlpCollector
from tests.unit import api_stub

ROOT = Path(__file__).parents[2]


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with tracing.installed(provider):
        yield exporter
    provider.shutdown()


def test_without_configuration_nothing_is_installed() -> None:
    assert tracing.setup("cloudmart-test", environ={}) is False
    assert not tracing.enabled()
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)  # the API's no-op proxy
    assert tracing.interceptors() == []
    with tracing.span("nothing") as span:
        assert span is None
        assert tracing.traceparent() is None
    with tracing.continued("00-" + "1" * 32 + "-" + "2" * 16 + "-01", "nothing") as span:
        assert span is None
    assert tracing.fastapi_telemetry()["tracing"] is False  # FastAPI's instrumentation off


@pytest.mark.parametrize(
    ("environ", "exporters"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, Console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, []),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, []),
    ],
)
def test_the_standard_variables_choose_the_exporters(
    environ: dict[str, str], exporters: list[str]
) -> None:
    assert tracing.exporters(environ) == exporters


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_TRACES_EXPORTER": "zipkin"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
    ],
)
def test_an_exporter_we_lack_leaves_tracing_off_and_says_so(
    environ: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    assert tracing.setup("cloudmart-test", environ) is False
    assert not tracing.enabled()
    assert "tracing off" in caplog.text


PROCESS = """
from cloudmart import tracing
from cloudmart.process import exit_now

assert tracing.setup("cloudmart-test") and tracing.setup("ignored")
with tracing.span("placed", {"cloudmart.aggregate_id": "o-1"}):
    pass
exit_now(0)
"""


@pytest.mark.parametrize(
    ("named", "service"), [({}, "cloudmart-test"), ({"OTEL_SERVICE_NAME": "shop"}, "shop")]
)
def test_a_process_the_variables_configure_exports_over_otlp_http(
    named: dict[str, str], service: str
) -> None:
    with OtlpCollector() as collector:
        environ = {"PATH": "/usr/bin:/bin", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint}
        done = subprocess.run(
            [sys.executable, "-c", PROCESS],
            cwd=ROOT,
            env=environ | named,
            capture_output=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr.decode()
    # Sent before os._exit: the exit flushed it (cloudmart/process.py).
    ((path, content_type, _),) = collector.received
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    ((sent_by, span),) = collector.spans()
    assert (sent_by, span.name) == (service, "placed")


def test_log_lines_carry_the_trace_id_of_their_span(exported: InMemorySpanExporter) -> None:
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.addFilter(tracing.TraceIds())
    handler.setFormatter(logging.Formatter("%(message)s%(trace)s"))
    logger = logging.getLogger("cloudmart.test_tracing")
    logger.addHandler(handler)
    try:
        logger.warning("outside")
        with tracing.span("inside") as span:
            assert span is not None
            logger.warning("inside")
    finally:
        logger.removeHandler(handler)
    trace_id = f"{span.get_span_context().trace_id:032x}"
    assert written.getvalue().splitlines() == ["outside", f"inside trace_id={trace_id}"]


async def test_a_request_span_is_named_by_its_route_and_continues_the_callers_trace(
    exported: InMemorySpanExporter,
) -> None:
    """FastAPI's own instrumentation, on our provider (api/main.py)."""
    app = create_app(api_stub.settings())
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        traceparent = f"00-{caller_trace}-{caller_span}-01"
        assert (await http.get("/docs", headers={"traceparent": traceparent})).status_code == 200
        assert (await http.get("/no-such-path")).status_code == 404
    servers = [s for s in exported.get_finished_spans() if s.kind == SpanKind.SERVER]
    docs, unrouted = servers
    assert docs.name == "GET /docs" and docs.attributes["http.response.status_code"] == 200
    assert f"{docs.context.trace_id:032x}" == caller_trace
    assert docs.parent is not None and f"{docs.parent.span_id:016x}" == caller_span
    assert unrouted.name == "GET" and unrouted.parent is None  # a trace of its own


def test_work_in_an_untraced_context_exports_nothing(exported: InMemorySpanExporter) -> None:
    def poll() -> None:
        with tracing.span("poll"):
            pass

    tracing.untraced().run(poll)
    assert exported.get_finished_spans() == ()
    poll()  # elsewhere, the same work is traced
    assert [s.name for s in exported.get_finished_spans()] == ["poll"]


async def test_the_consoles_polling_of_open_pages_starts_no_trace(
    exported: InMemorySpanExporter,
) -> None:
    async def fetch(order_id: str) -> Snapshot:
        with tracing.span("fetch"):
            return Snapshot(order={"order_id": order_id, "status": "RUNNING"}, events=[])

    feed = OrderFeed(fetch, interval=0.01)
    with tracing.span("GET /console/orders/{order_id}/live"):
        async with contextlib.aclosing(feed.follow("o-1")) as stream:
            await anext(stream)
            await asyncio.sleep(0.05)  # a few more polls
    assert [s.name for s in exported.get_finished_spans()] == [
        "GET /console/orders/{order_id}/live"
    ]


def test_temporals_spans_keep_a_failures_type_not_its_message(
    exported: InMemorySpanExporter,
) -> None:
    # What Temporal's interceptor does with the tracer it is given, on a failed activity.
    tracer = tracing.TypeOnly(trace.get_tracer("test", tracer_provider=tracing._provider))
    with (
        pytest.raises(ValueError),
        tracer.start_as_current_span(
            "RunActivity:payment.refund", set_status_on_exception=False
        ) as span,
    ):
        span.set_status(Status(StatusCode.ERROR, "ValueError: refund of 2000 cents refused"))
        raise ValueError("refund of 2000 cents refused")
    marked = tracer.start_span("CompleteWorkflow:OrderSaga")
    marked.record_exception(ValueError("refund of 2000 cents refused"))
    marked.end()

    for done in exported.get_finished_spans():
        assert "2000" not in repr(done.to_json()), done.name
        assert [dict(e.attributes or {}) for e in done.events] == [{"exception.type": "ValueError"}]
    refund = exported.get_finished_spans()[0]
    assert (refund.status.status_code, refund.status.description) == (
        StatusCode.ERROR,
        "ValueError",
    )
