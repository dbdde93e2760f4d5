"""Traces (OpenTelemetry): one per order, from the API's ``POST /orders`` through the saga's
workflow and activities (Temporal's tracing interceptor), each step's database transaction and
event append, to the projector's handling of those events in another process.

A process traces only where OpenTelemetry's standard variables ask for it
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` set, or
``OTEL_TRACES_EXPORTER``; ``OTEL_SDK_DISABLED=true`` wins). Otherwise nothing is installed: no
provider, exporter or interceptor, FastAPI's instrumentation stays off, and ``span`` hands back
a shared null context.

The API's request spans are FastAPI's own (``fastapi_telemetry``). The projector reads events,
not requests, so no context reaches it in a call: the event store keeps with each event the W3C
``traceparent`` of the append that stored it, and the projector continues that trace
(docs/operations.md#traces).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import random
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes, AttributeValue

from cloudmart.contracts.failures import BusinessFailure

if TYPE_CHECKING:
    from fastapi.telemetry import TelemetryConfig
    from opentelemetry.sdk.trace import TracerProvider
    from temporalio.client import Interceptor

log = logging.getLogger("cloudmart.tracing")

ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
EXPORTERS = ("otlp", "console")
"""What ``OTEL_TRACES_EXPORTER`` may name (comma-separated). OTLP goes over HTTP/protobuf only
(pyproject.toml says why not gRPC)."""

_OFF: AbstractContextManager[None] = contextlib.nullcontext()
_PROPAGATOR = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None


def exporters(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The exporters the environment asks for; none: tracing is off.

    Unlike the SDK's own default (``otlp`` to localhost), nothing is exported unless asked for:
    ``make up`` runs no collector."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",")]
    named = [n for n in named if n]
    if not named:
        return ["otlp"] if any(environ.get(name, "").strip() for name in ENDPOINTS) else []
    return [n for n in named if n != "none"]


def setup(service: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Trace this process if the environment asks for it, as ``service`` (``service.name``,
    unless ``OTEL_SERVICE_NAME`` or ``OTEL_RESOURCE_ATTRIBUTES`` names it). Once per process:
    a second call changes nothing. Returns whether the process traces. ``environ`` decides
    whether (the tests pass their own); the SDK reads the rest from the process's environment.

    An exporter or protocol we do not have is logged and leaves tracing off: traces are worth
    less than a process that starts."""
    if _tracer is not None:
        return True
    named = exporters(environ)
    if not named:
        return False
    protocol = next((environ[p] for p in PROTOCOLS if environ.get(p)), "http/protobuf")
    unknown = [n for n in named if n not in EXPORTERS]
    if unknown or ("otlp" in named and protocol.strip().lower() != "http/protobuf"):
        log.warning(
            "tracing off: OTEL_TRACES_EXPORTER may be %s (OTLP over http/protobuf), not %s",
            " or ".join(EXPORTERS),
            ", ".join(unknown) or f"otlp over {protocol}",
        )
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service}))
    provider = TracerProvider(resource=resource)  # OTEL_TRACES_SAMPLER, if set
    for name in named:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_*
        else:
            exporter = ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))  # OTEL_BSP_*
    trace.set_tracer_provider(provider)  # for any library that traces through the global API
    _install(provider)
    log.info("tracing on: %s, exporting to %s", resource.attributes[SERVICE_NAME], named)
    return True


def _install(provider: TracerProvider | None) -> None:
    global _provider, _tracer
    _provider = provider
    _tracer = None if provider is None else provider.get_tracer("cloudmart")


@contextmanager
def installed(provider: TracerProvider) -> Iterator[None]:
    """Trace with ``provider`` (the tests' in-memory one) until the block ends, then as before.
    OpenTelemetry's global provider is left alone: it can be set once per process, and test
    processes run many tests."""
    before = _provider
    _install(provider)
    try:
        yield
    finally:
        _install(before)


def enabled() -> bool:
    return _tracer is not None


def fastapi_telemetry() -> TelemetryConfig:
    """FastAPI's own instrumentation, on our provider: a server span per request, named by its
    route template (``POST /orders``), a child of the caller's span given a ``traceparent``
    header, with spans for its dependencies and its endpoint; no exception messages. Its
    metrics and log records stay off: the API's metrics are Prometheus's (cloudmart/metrics.py),
    and its log records would carry exception messages. Nothing at all with tracing off."""
    return {
        "tracer_provider": _provider,
        "tracing": _provider is not None,
        "metrics": False,
        "logs": False,
        "auto_configure": False,  # FASTAPI_OTEL_AUTO_CONFIGURE would export everything twice
    }


def span(
    name: str,
    attributes: Attributes = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    context: Context | None = None,
    links: Sequence[Link] | None = None,
) -> AbstractContextManager[Span | None]:
    """A span, current within the block (a child of the current one unless ``context`` says
    otherwise); None, and nothing else, when tracing is off.

    An exception is recorded by its type alone (``error.type``): a database driver's message can
    quote the row it failed on, a payment token or an address (activities/failures.py). It ends
    the span in error unless it is a business refusal (say ``Undeliverable``), as Temporal's
    interceptor leaves such a failed activity's span (a benign failure)."""
    if _tracer is None:
        return _OFF
    return _recorded(_tracer, name, attributes, kind, context, links)


@contextmanager
def _recorded(
    tracer: trace.Tracer,
    name: str,
    attributes: Attributes,
    kind: SpanKind,
    context: Context | None,
    links: Sequence[Link] | None,
) -> Iterator[Span]:
    with tracer.start_as_current_span(
        name,
        context=context,
        kind=kind,
        attributes=attributes,
        links=links,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except Exception as err:
            current.set_attribute("error.type", type(err).__name__)
            if not isinstance(err, BusinessFailure):  # a refusal is an outcome, not an error
                current.set_status(Status(StatusCode.ERROR, type(err).__name__))
            raise


def continued(traceparent: str | None, name: str) -> AbstractContextManager[Span | None]:
    """A span in the trace ``traceparent`` names, a child of the span that stored it, linked to
    the current span (say, the projector's batch); none without a traceparent or tracing."""
    if _tracer is None or not traceparent:
        return _OFF
    here = trace.get_current_span().get_span_context()
    return span(
        name,
        context=extract({"traceparent": traceparent}),
        links=[Link(here)] if here.is_valid else None,
    )


def extract(carrier: Mapping[str, str]) -> Context | None:
    """The context a W3C ``traceparent`` (and ``tracestate``) in ``carrier`` names, if any."""
    if "traceparent" not in carrier:
        return None
    return _PROPAGATOR.extract(carrier)


def traceparent(of: Span | None = None) -> str | None:
    """The W3C ``traceparent`` of span ``of`` (by default the current one); None with no span
    or with tracing off."""
    if _tracer is None:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, None if of is None else trace.set_span_in_context(of))
    return carrier.get("traceparent")


def interceptors() -> list[Interceptor]:
    """Temporal's tracing interceptor, for a client (its workers take it from the client); none
    with tracing off. It passes the context in each call's headers, which Temporal stores in
    clear (the codec encodes payloads, not headers): a traceparent, which says nothing of an
    order. It traces through a ``TypeOnly`` tracer: its spans keep a failure's type, not its
    message."""
    if _tracer is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(TypeOnly(_tracer))]


class TypeOnly(trace.Tracer):
    """A tracer whose spans record an exception by its type alone: no message, no stack trace,
    in an event or a status. Temporal's interceptor records each failure it sees, and a
    refusal's message can name an amount or quote a payment provider."""

    def __init__(self, inner: trace.Tracer) -> None:
        self._inner = inner

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        started = self._inner.start_span(
            name, context, kind, attributes, links, start_time, False, False
        )
        return _TypeOnlySpan(started)

    @contextmanager  # type: ignore[override]
    def start_as_current_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        with self._inner.start_as_current_span(
            name, context, kind, attributes, links, start_time, False, False, end_on_exit
        ) as started:
            current = _TypeOnlySpan(started)
            try:
                yield current
            except Exception as err:
                if record_exception:
                    current.record_exception(err)
                if set_status_on_exception:
                    current.set_status(Status(StatusCode.ERROR, type(err).__name__))
                raise


class _TypeOnlySpan(trace.Span):
    def __init__(self, inner: Span) -> None:
        self._inner = inner

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        kind = type(exception).__name__
        self._inner.set_attribute("error.type", kind)
        self._inner.add_event("exception", {"exception.type": kind}, timestamp)

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        # The interceptor's description is "<type>: <message>": the type is kept.
        if isinstance(status, Status):
            status, description = status.status_code, status.description
        kind = (description or "").partition(":")[0] or None
        self._inner.set_status(Status(status, kind if status is StatusCode.ERROR else None))

    def end(self, end_time: int | None = None) -> None:
        self._inner.end(end_time)

    def get_span_context(self) -> trace.SpanContext:
        return self._inner.get_span_context()

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        self._inner.set_attributes(attributes)

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self._inner.set_attribute(key, value)

    def add_event(
        self, name: str, attributes: Attributes = None, timestamp: int | None = None
    ) -> None:
        self._inner.add_event(name, attributes, timestamp)

    def add_link(self, context: trace.SpanContext, attributes: Attributes = None) -> None:
        self._inner.add_link(context, attributes)

    def update_name(self, name: str) -> None:
        self._inner.update_name(name)

    def is_recording(self) -> bool:
        return self._inner.is_recording()


def untraced() -> contextvars.Context:
    """A fresh context for background work that starts no trace (the console's polling of open
    pages): its current span is an unsampled one, which the default, parent-based, sampler
    follows. Without it, each poll would be a trace of its own."""
    fresh = contextvars.Context()
    unsampled = trace.NonRecordingSpan(
        trace.SpanContext(
            trace_id=random.getrandbits(128) | 1,
            span_id=random.getrandbits(64) | 1,
            is_remote=False,
            trace_flags=trace.TraceFlags(trace.TraceFlags.DEFAULT),
        )
    )
    fresh.run(otel_context.attach, trace.set_span_in_context(unsampled))
    return fresh


SHUTDOWN_WAIT = 5.0
"""How long a process that ends waits for its last spans to be exported, in seconds."""


def shutdown() -> None:
    """Export what is still buffered. The provider does it at exit, but our processes end with
    ``os._exit`` (cloudmart/process.py), which skips that. Bounded: an exporter retrying an
    unreachable collector would otherwise hold the exit for half a minute."""
    if _provider is not None:
        exporting = threading.Thread(target=_provider.shutdown, daemon=True)
        exporting.start()
        exporting.join(SHUTDOWN_WAIT)


class TraceIds(logging.Filter):
    """Gives each log record ``trace``: `` trace_id=<32 hex>`` when it is written within a span,
    else empty; a handler's format ends with ``%(trace)s``."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        record.trace = f" trace_id={context.trace_id:032x}" if context.is_valid else ""
        return True
