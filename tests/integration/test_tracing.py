"""One order, one trace (cloudmart/tracing.py): its ``POST /orders`` to the real API in this
process, the saga on the time-skipping test server with real workers (sandboxed or not) on the
real databases (SQLite and PostgreSQL), then the projector's handling of its events, every span
exported to memory. The order ships to Japan, which shipping refuses: the trace holds the steps,
the failure and the compensations, each with its database transactions, and the event appends
whose projection, in what would be another process, joins the same trace; the saga's log lines
carry its trace id."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import create_engine
from temporalio.testing import WorkflowEnvironment

from cloudmart import tracing
from cloudmart.contracts.saga import workflow_id
from cloudmart.settings import DATABASES, Settings
from cloudmart.temporal import connect
from services.database import database_name
from services.factory import Services
from tests.integration.test_activity_tracking import api, api_settings, as_customer
from tests.support import place_order
from tests.workflows.saga_helpers import one_worker

STEPS = {
    # step or compensation: the databases its transactions are on
    "customers.ensure": {"customers"},
    "inventory.reserve": {"inventory"},
    "payment.check_fraud": {"payment"},
    "payment.charge": {"payment", "payment_provider"},
    "shipping.create": {"shipping"},  # refused: Undeliverable
    "shipping.cancel": {"shipping"},
    "payment.refund": {"payment", "payment_provider"},
    "inventory.release": {"inventory"},
}
APPEND = "event_store.append"


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with tracing.installed(provider):
        yield exporter
    provider.shutdown()


@pytest.mark.parametrize("sandboxed", [True, False], ids=["sandboxed", "unsandboxed"])
async def test_an_order_is_one_trace_from_its_request_to_its_projection(
    settings: Settings,
    services: Services,
    temporal_env: WorkflowEnvironment,
    exported: InMemorySpanExporter,
    sandboxed: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="temporalio.workflow")
    caplog.handler.addFilter(tracing.TraceIds())  # as the worker's log handler has it
    traced = api_settings(
        settings, temporal_address=temporal_env.client.service_client.config.target_host
    )
    client = await connect(traced)  # as every process connects: with tracing on, traced
    async with one_worker(client, settings, services, sandboxed=sandboxed), api(traced) as http:
        placed = await http.post(
            "/orders",
            params={"wait": 30},
            json=place_order(country="JP").model_dump(mode="json"),
            headers=as_customer("c-42"),
        )
    assert placed.status_code == 202, placed.text
    assert placed.json()["state"]["status"] == "FAILED"
    order_id = placed.json()["order_id"]
    assert services.projector is not None and services.event_store is not None
    services.projector.catch_up()
    spans = Spans(exported.get_finished_spans(), settings)

    (request,) = spans.named("POST /orders")
    trace_id = request.context.trace_id
    assert request.kind == SpanKind.SERVER and request.parent is None
    assert request.attributes["http.response.status_code"] == 202
    (start,) = spans.named("StartWorkflow:OrderSaga")
    assert request in spans.ancestors(start)  # through FastAPI's span of the endpoint
    (run,) = spans.named("RunWorkflow:OrderSaga")
    assert spans.parent(run) is start
    # The saga's own log lines carry the order's trace id, as the worker writes them.
    ended = f"Order {order_id} is FAILED"
    logged = [r for r in caplog.records if r.getMessage().startswith(ended)]
    assert logged and {r.trace for r in logged} == {f" trace_id={trace_id:032x}"}  # type: ignore[attr-defined]
    saga = [s for s in spans.all if s.attributes.get("temporalWorkflowID") == workflow_id(order_id)]
    assert len(saga) > 2 * len(STEPS) and {s.context.trace_id for s in saga} == {trace_id}

    # Every step, then every compensation in reverse, each an activity in the order's trace,
    # a child of the saga's start of it, holding its own transactions on its service's database.
    ran = sorted(spans.prefixed("RunActivity:"), key=lambda s: s.start_time or 0)
    # An attempt that outlives its timeout on a loaded machine is tried again, under the same
    # StartActivity span: each scheduled activity counts once, by its last attempt.
    last_attempts = {s.parent.span_id: s for s in ran if s.parent is not None}
    steps = [s for s in last_attempts.values() if s.name != f"RunActivity:{APPEND}"]
    assert [s.name.removeprefix("RunActivity:") for s in steps] == list(STEPS)
    for step in steps:
        name = step.name.removeprefix("RunActivity:")
        scheduled = spans.parent(step)
        assert scheduled is not None and scheduled.name == f"StartActivity:{name}"
        assert spans.parent(scheduled) is start and step.context.trace_id == trace_id
        transactions = spans.children(step, "transaction")
        assert {spans.database(t) for t in transactions} == STEPS[name], name
    (refused,) = spans.children(steps[4], "transaction")
    # A business refusal is recorded by its type, not as an error (nor is the activity).
    assert refused.attributes["error.type"] == "Undeliverable"
    assert refused.status.status_code == StatusCode.UNSET == steps[4].status.status_code
    # A failure's message ("we do not deliver to JP; ...") is in no span, only its type: the
    # messages of refusals can name amounts, or quote a payment provider.
    exceptions = [e for span in spans.all for e in span.events if e.name == "exception"]
    assert exceptions and all(set(e.attributes or {}) == {"exception.type"} for e in exceptions)
    for span in spans.all:
        texts = [span.status.description or "", *map(str, (span.attributes or {}).values())]
        texts += [str(v) for e in span.events for v in (e.attributes or {}).values()]
        assert not any("deliver to" in text for text in texts), span.name

    # Each append of the order's events: the activity, the store's append, its transaction.
    appends = [
        a for s in ran if s.name == f"RunActivity:{APPEND}" for a in spans.children(s, APPEND)
    ]
    assert appends and all(a.attributes["cloudmart.aggregate_id"] == order_id for a in appends)
    for append in appends:
        (transaction,) = spans.children(append, "transaction")
        assert spans.database(transaction) == "event_store"

    # The projector's handling of each append: in the order's trace, a child of the append that
    # stored the events (the traceparent the store kept), linked to the projector's own batch.
    projected = spans.named("projector.project")
    assert projected and {p.context.trace_id for p in projected} == {trace_id}
    assert all(spans.parent(p) in appends for p in projected)
    types = [t for p in projected for t in p.attributes["cloudmart.event_types"]]  # type: ignore[union-attr]
    assert types == [e.event_type for e in services.event_store.stream(order_id)]
    assert "CompensationStarted" in types and types[-1] == "OrderFailed"
    for projection in projected:
        (link,) = projection.links
        batch_transaction = spans.by_id[link.context.span_id]
        assert spans.database(batch_transaction) == "readmodel"
        batch = spans.parent(batch_transaction)
        assert batch is not None and batch.name == "projector.batch"
        assert batch.context.trace_id != trace_id  # the projector's own trace


class Spans:
    def __init__(self, spans: Sequence[ReadableSpan], settings: Settings) -> None:
        self.all = list(spans)
        self.by_id = {s.context.span_id: s for s in self.all}
        self._databases = {
            database_name(create_engine(settings.db_url(name))): name for name in DATABASES
        }

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.all if s.name == name]

    def prefixed(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.all if s.name.startswith(prefix)]

    def parent(self, span: ReadableSpan) -> ReadableSpan | None:
        return None if span.parent is None else self.by_id.get(span.parent.span_id)

    def ancestors(self, span: ReadableSpan) -> list[ReadableSpan]:
        above = []
        while (parent := self.parent(span)) is not None:
            above.append(parent)
            span = parent
        return above

    def children(self, span: ReadableSpan, name: str) -> list[ReadableSpan]:
        return [s for s in self.named(name) if self.parent(s) is span]

    def database(self, transaction: ReadableSpan) -> str:
        return self._databases[transaction.attributes["db.namespace"]]  # type: ignore[index]
