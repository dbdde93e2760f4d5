"""The two sagas side by side, in one run on one stack: the order saga, orchestrated on Temporal,
and the return saga, choreographed over the event store (docs/orchestration-vs-choreography.md).

    make bench-styles                          # python -m bench.saga_styles [--rounds 100]

Starts its own stack like ``make up`` (file-backed dev server, ``python -m worker`` for the saga
and the services, a second one for the subscribers, the return consumers among them, as the
worker runs them, and ``python -m api``), SQLite service databases. First some orders are
placed (untimed: they warm the stack up and are the ones returned later). Then each round, one
at a time:

1. an order from its start to COMPLETED: the saga through the Temporal client, waited for by its
   result (bench/drivers.py's ``saga_via_client``, as ``make bench`` drives it);
2. a return of one line of an earlier order, in its two automated parts (between them the
   inspection is a person's step, which the bench plays at once):
   - from ``POST /orders/{id}/returns`` sent to shipping's ``ReturnShipmentCreated`` stored;
   - from ``POST /returns/{id}/inspection`` (accepted) sent to loyalty's ``PointsRevoked``, the
     last reaction (inventory restocks, payment refunds, loyalty revokes, one after the other).

The return's times run from the bench's clock when it sends the request to the event's
``recorded_at`` (the relay's append, on the same machine's clock), so how often the bench looks
does not count. Each reaction's hop (its ``recorded_at`` less its cause's) is shown as well.

Then, counted from the data the run left: the events each saga wrote (the event store's, and the
order's Temporal history or the return's outbox and inbox rows), the places to look when one
goes wrong (the order's one history; the return's consumers, and the tables holding a row of
it), and the code of each (lines of the saga's modules, read from the files).
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import io
import sqlite3
import tempfile
import time
import tokenize
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import make_url
from temporalio.client import Client

from bench.drivers import drive, saga_via_client
from bench.results import RESULTS, add_results_option, include, publish
from bench.saga_vs_floor import start_stack
from bench.stats import Run, table
from cloudmart.contracts.events import EventType, StoredEvent
from cloudmart.contracts.returns import CONSUMER_DATABASE, CONSUMERS, PUBLISHED_BY, ReturnEvent
from cloudmart.contracts.saga import workflow_id
from cloudmart.process import exit_now
from cloudmart.settings import Settings
from cloudmart.temporal import connect
from devstack.stack import DevStack
from services.event_store.store import EventStore
from services.factory import build_event_store

ROOT = Path(__file__).parents[1]
STYLES_DOC = ROOT / "docs" / "orchestration-vs-choreography.md"
WAIT = 30.0
"""Seconds a return may take to reach an event before the run gives up."""
LOOK = 0.01
"""How often the bench looks for a return's next event (its times come from the store)."""

ORDER, LABEL, AFTER_INSPECTION = (
    "order saga: start → COMPLETED",
    "return saga: request → label",
    "return saga: inspection → points revoked",
)
CHOREOGRAPHY_TABLES = 4
"""A consumer's own: checkpoint, inbox, outbox, delivery failures (services/choreography)."""
HOPS = (
    ReturnEvent.RETURN_SHIPMENT_CREATED,
    ReturnEvent.STOCK_RESTOCKED,
    ReturnEvent.RETURN_REFUNDED,
    ReturnEvent.POINTS_REVOKED,
)
"""The return's automated reactions, each a consumer's hop from the event before it."""

CODE: dict[str, dict[str, tuple[str, ...]]] = {
    "order saga (orchestrated)": {
        "order: the workflow (the coordinator)": ("workflows/*.py",),
        "order: the steps (activities)": ("activities/*.py",),
        "order: the API's side (start, cancel, updates)": ("api/sagas.py",),
        "order: contracts": ("cloudmart/contracts/saga.py", "cloudmart/contracts/orders.py"),
    },
    "return saga (choreographed)": {
        "return: the mechanics (no coordinator)": ("services/choreography/*.py",),
        "return: the services' reactions": ("services/*/returns.py",),
        "return: the API's side (request, inspection, chain)": ("api/routes/returns.py",),
        "return: contracts": ("cloudmart/contracts/returns.py",),
    },
}
"""The saga's modules by role. The services' domain code they both call (reserve, refund, ...)
is in neither."""


@dataclass
class Measured:
    latencies: dict[str, list[float]] = field(
        default_factory=lambda: {ORDER: [], LABEL: [], AFTER_INSPECTION: []}
    )
    hops: dict[str, list[float]] = field(default_factory=lambda: {h: [] for h in HOPS})
    order_ids: list[str] = field(default_factory=list)
    """The orders returned (their sagas also counted)."""
    return_ids: list[str] = field(default_factory=list)


# --- measuring ---------------------------------------------------------------------------------


def completed_orders(store: EventStore) -> list[str]:
    """Every order the store has seen complete, in the order they completed."""
    done: list[str] = []
    position = 0
    while events := store.read_after(position, 1000):
        done += [e.aggregate_id for e in events if e.event_type == EventType.ORDER_COMPLETED]
        position = events[-1].position
    return done


def committed_lines(store: EventStore, order_id: str) -> list[dict[str, object]]:
    [committed] = [
        e for e in store.stream(order_id) if e.event_type == EventType.INVENTORY_COMMITTED
    ]
    return [{"sku": line["sku"], "quantity": line["quantity"]} for line in committed.data["lines"]]


async def reached(store: EventStore, return_id: str, event_type: str) -> list[StoredEvent]:
    """The return's chain once it holds ``event_type`` (an error if it has not within WAIT s)."""
    deadline = time.monotonic() + WAIT
    while True:
        chain = store.correlated(return_id)
        if any(e.event_type == event_type for e in chain):
            return chain
        if time.monotonic() > deadline:
            last = chain[-1].event_type if chain else "nothing"
            raise RuntimeError(f"return {return_id} has no {event_type} (it is at {last})")
        await asyncio.sleep(LOOK)


def ms_between(sent: datetime, event: StoredEvent) -> float:
    assert event.recorded_at is not None
    return (event.recorded_at - sent).total_seconds() * 1000


async def one_return(
    http: httpx.AsyncClient, store: EventStore, operator: dict[str, str], order_id: str
) -> tuple[str, float, float, dict[str, float]]:
    """Return the order's lines, inspect and accept the parcel; the two parts' milliseconds and
    each reaction's hop."""
    sent = datetime.now(UTC)
    requested = await http.post(
        f"/orders/{order_id}/returns", json={"lines": committed_lines(store, order_id)}
    )
    requested.raise_for_status()
    return_id = requested.json()["return_id"]
    chain = await reached(store, return_id, ReturnEvent.RETURN_SHIPMENT_CREATED)
    label = ms_between(sent, chain[-1])

    sent = datetime.now(UTC)
    inspected = await http.post(
        f"/returns/{return_id}/inspection",
        json={"accepted": True, "note": "bench"},
        headers=operator,
    )
    inspected.raise_for_status()
    chain = await reached(store, return_id, ReturnEvent.POINTS_REVOKED)
    after_inspection = ms_between(sent, chain[-1])

    by_id = {e.event_id: e for e in chain}
    hops = {}
    for event in chain:
        if event.event_type in HOPS:
            assert event.causation_id is not None
            cause = by_id[event.causation_id]
            assert event.recorded_at is not None and cause.recorded_at is not None
            hops[event.event_type] = (event.recorded_at - cause.recorded_at).total_seconds() * 1000
    if set(hops) != set(HOPS):
        raise RuntimeError(f"return {return_id}'s chain is not the whole happy path: {chain}")
    return return_id, label, after_inspection, hops


async def measure(stack: DevStack, rounds: int, warm_up: int) -> Measured:
    settings = stack.settings
    assert settings.operator_token is not None
    operator = {"Authorization": f"Bearer {settings.operator_token.get_secret_value()}"}
    client = await connect(settings)
    order = saga_via_client(client, settings)
    store = build_event_store(settings, pool_size=1)
    measured = Measured()
    try:
        # Untimed: warms the stack up, and gives every round an order to return.
        await drive("set-up", warm_up + rounds, 4, order)
        returnable = completed_orders(store)
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=WAIT) as http:
            for n in range(warm_up + rounds):
                started = time.perf_counter()
                await order(n)
                ordered = (time.perf_counter() - started) * 1000
                return_id, label, after, hops = await one_return(
                    http, store, operator, returnable[n]
                )
                if n < warm_up:
                    continue
                measured.latencies[ORDER].append(ordered)
                measured.latencies[LABEL].append(label)
                measured.latencies[AFTER_INSPECTION].append(after)
                for hop, ms in hops.items():
                    measured.hops[hop].append(ms)
                measured.order_ids.append(returnable[n])
                measured.return_ids.append(return_id)
    finally:
        store.engine.dispose()
    return measured


# --- counting ----------------------------------------------------------------------------------


@dataclass
class Counted:
    order_store_events: int
    order_history_events: int
    order_histories: int
    return_store_events: int
    return_outbox_rows: int
    return_inbox_rows: int
    return_consumers: int
    """Consumers whose inbox holds one of the return's events."""
    return_state_tables: list[str]
    """The services' own tables holding a row that names the return."""


async def histories(client: Client, order_id: str) -> tuple[int, int]:
    """The order's workflow executions (its histories) and the events of its history."""
    query = f"WorkflowId = '{workflow_id(order_id)}'"
    executions = [e async for e in client.list_workflows(query)]
    history = await client.get_workflow_handle(workflow_id(order_id)).fetch_history()
    return len(executions), len(history.events)


def rows_mentioning(database: Path, needles: list[str]) -> dict[str, int]:
    """Per table of a SQLite database, the rows that mention any of ``needles`` in any column."""
    found: dict[str, int] = {}
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        tables = [
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        for name in tables:
            columns = [row[1] for row in connection.execute(f'PRAGMA table_info("{name}")')]
            where = " OR ".join(f'CAST("{c}" AS TEXT) LIKE ?' for c in columns for _ in needles)
            values = [f"%{needle}%" for _ in columns for needle in needles]
            rows = connection.execute(f'SELECT count(*) FROM "{name}" WHERE {where}', values)
            if count := rows.fetchone()[0]:
                found[name] = count
    return found


async def count(settings: Settings, measured: Measured) -> Counted:
    """What the last round's order and return left, read back from the stack's databases."""
    order_id, return_id = measured.order_ids[-1], measured.return_ids[-1]
    store = build_event_store(settings, pool_size=1)
    try:
        order_events = store.stream(order_id)
        chain = store.correlated(return_id)
    finally:
        store.engine.dispose()
    executions, history = await histories(await connect(settings), order_id)
    # Where the return left a trace: in each consumer's database, its inbox (the events it
    # handled), its outbox (its reactions) and the service's own tables naming the return (the
    # label, the restock, the refund); besides, each consumer's checkpoint and dead letters
    # (nothing of the return when all went well, but where a stuck one shows).
    needles = [return_id, *(e.event_id for e in chain)]
    consumers = outbox = inbox = 0
    state: list[str] = []
    for database in sorted({CONSUMER_DATABASE[c] for c in CONSUMERS}):
        found = rows_mentioning(Path(str(make_url(settings.db_url(database)).database)), needles)
        if found.get("inbox"):
            consumers += 1
        outbox += found.pop("outbox", 0)
        inbox += found.pop("inbox", 0)
        state += [f"{database}.{table}" for table in sorted(found)]
    return Counted(
        order_store_events=len(order_events),
        order_history_events=history,
        order_histories=executions,
        return_store_events=len(chain),
        return_outbox_rows=outbox,
        return_inbox_rows=inbox,
        return_consumers=consumers,
        return_state_tables=state,
    )


def code_lines(path: Path) -> tuple[int, int]:
    """A module's lines, and those that are code: not blank, not a comment, not documentation
    (a string standing as a statement: a docstring, or an attribute's)."""
    source = path.read_text()
    documentation: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            assert node.end_lineno is not None
            documentation.update(range(node.lineno, node.end_lineno + 1))
    code: set[int] = set()
    skipped = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in skipped and token.type != tokenize.ENDMARKER:
            code.update(range(token.start[0], token.end[0] + 1))
    return len(source.splitlines()), len(code - documentation)


def code_size(root: Path = ROOT) -> list[list[str]]:
    """A row per role of each saga's modules, under a heading row with each saga's total."""
    rows = []
    for saga, roles in CODE.items():
        parts = []
        for role, patterns in roles.items():
            files = sorted({f for p in patterns for f in root.glob(p) if f.name != "__init__.py"})
            if not files:
                raise FileNotFoundError(f"no module for {role}: {patterns}")
            sizes = [code_lines(f) for f in files]
            parts.append(
                (role, " ".join(patterns), len(files), *map(sum, zip(*sizes, strict=True)))
            )
        total = [str(sum(int(p[k]) for p in parts)) for k in (2, 3, 4)]
        rows.append([f"{saga}, total", "—", *total])
        rows += [
            [role, modules, str(n), str(lines), str(code)]
            for role, modules, n, lines, code in parts
        ]
    return rows


# --- the report --------------------------------------------------------------------------------


def report(measured: Measured, counted: Counted, code: list[list[str]]) -> str:
    def row(name: str, xs: list[float]) -> list[str]:
        run = Run(name, 1, xs, 1.0)
        return [name, str(len(xs)), f"{run.p50:.0f}", f"{run.percentile(95):.0f}"]

    latency = [row(name, xs) for name, xs in measured.latencies.items()]
    hops = [row(f"{PUBLISHED_BY[hop]}: {hop}", xs) for hop, xs in measured.hops.items()]
    c = counted
    return "\n".join(
        [
            "the automated parts, one at a time, an order then a return each round (file-backed",
            "dev server, SQLite service databases and event store; the return's consumers in the",
            "subscribers worker, polling every 50 ms once caught up)",
            table(latency, ["part", "N", "p50 ms", "p95 ms"]),
            "",
            "each reaction of the return, from its cause stored to it stored (a consumer's hop)",
            table(hops, ["reaction", "N", "p50 ms", "p95 ms"]),
            "",
            "what one of each wrote (counted from the run's databases)",
            table(
                [
                    [
                        "order saga",
                        str(c.order_store_events),
                        f"{c.order_history_events} history events",
                    ],
                    [
                        "return saga",
                        str(c.return_store_events),
                        f"{c.return_outbox_rows} outbox rows, {c.return_inbox_rows} inbox rows",
                    ],
                ],
                ["saga", "events in the store", "also written"],
            ),
            "",
            "where to look when one goes wrong",
            f"  order saga:  {c.order_histories} Temporal history (GET /orders/{{id}}, the Web UI)",
            f"  return saga: GET /returns/{{id}}; {c.return_consumers} consumers in "
            f"{c.return_consumers} databases, each with a checkpoint, an inbox, an outbox and dead",
            f"               letters ({CHOREOGRAPHY_TABLES * c.return_consumers} tables); "
            f"{len(c.return_state_tables)} state tables naming the return; the event store",
            "",
            "code (lines of the saga's modules, read from the files; code: not blank, comment or",
            "documentation)",
            table(code, ["part", "modules", "files", "lines", "code"]),
            "",
            f"the return's state tables: {', '.join(c.return_state_tables)} (loyalty's account "
            "keys its rows by order)",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100, help="one order and one return each")
    parser.add_argument("--warm-up", type=int, default=3, help="untimed rounds first")
    add_results_option(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cloudmart-bench-styles-") as data:
        stack = start_stack(Path(data))
        try:
            measured = asyncio.run(measure(stack, args.rounds, args.warm_up))
            counted = asyncio.run(count(stack.settings, measured))
        finally:
            stack.stop()
    text = report(measured, counted, code_size())
    print(text)
    path = publish("saga_styles", text, args.results)
    if args.results.resolve() == RESULTS.resolve():  # the comparison's page shows it too
        include(STYLES_DOC, "results/saga_styles.md", path.read_text())
    print(f"written: {path}")


if __name__ == "__main__":
    main()
    exit_now(0)
