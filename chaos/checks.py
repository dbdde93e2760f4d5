"""What must hold after the chaos: each check gives its violations (empty: it passed) and what it
counted, and can fail on crafted data (tests/test_chaos.py makes each one fail)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select, text
from sqlmodel import Session

from cloudmart.contracts.orders import OrderState
from services.database import read_only
from services.readmodel.projector import PROJECTION_TABLES, Projector

OUTCOME_EVENTS = {
    "OrderCompleted": "COMPLETED",
    "OrderFailed": "FAILED",
    "OrderCancelled": "CANCELLED",
}


@dataclass
class Check:
    name: str
    counted: str
    """What was looked at, e.g. "300 orders" (shown next to PASS/FAIL)."""
    violations: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.violations


def terminal(
    states: Mapping[str, Mapping[str, Any] | None], settle_timeout: float, running: int
) -> Check:
    """Every saga ended (COMPLETED, FAILED or CANCELLED), and its execution closed."""
    check = Check(f"every saga terminal <= {settle_timeout:.0f}s after the faults", "")
    if running:
        check.violations.append(f"{running} saga execution(s) still running (-1: unknown)")
    ended = 0
    for order_id, state in states.items():
        status = (state or {}).get("status")
        if status in OUTCOME_EVENTS.values():
            ended += 1
        else:
            check.violations.append(f"order {order_id} is still {status}")
    check.counted = f"{ended}/{len(states)} ended"
    return check


EventRowTuple = tuple[str, int, str, str]
"""aggregate_id, sequence, event_type, event_id"""


def event_rows(orders: Engine) -> list[EventRowTuple]:
    sql = "SELECT aggregate_id, sequence, event_type, event_id FROM events ORDER BY position"
    with read_only(orders).connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql))]  # type: ignore[misc]


def events_once(rows: Sequence[EventRowTuple], states: Iterable[OrderState]) -> Check:
    """No event stored twice: no repeated (order, sequence) or event id, no event type twice in
    one order (each transition happens at most once per saga), sequences 1..n without gaps, and
    every ended order's stream ends with exactly one outcome event, the saga's."""
    check = Check("no event appended twice; streams end in the outcome", f"{len(rows)} events")
    problems = check.violations
    for (aggregate, sequence), n in Counter((r[0], r[1]) for r in rows).items():
        if n > 1:
            problems.append(f"order {aggregate}: sequence {sequence} stored {n} times")
    for event_id, n in Counter(r[3] for r in rows).items():
        if n > 1:
            problems.append(f"event {event_id} stored {n} times")
    streams: dict[str, list[EventRowTuple]] = {}
    for row in rows:
        streams.setdefault(row[0], []).append(row)
    by_id = {s.order_id: s for s in states}
    for aggregate, stream in streams.items():
        if aggregate not in by_id:
            problems.append(f"events for unknown order {aggregate}")
        types = Counter(r[2] for r in stream)
        for event_type, n in types.items():
            if n > 1:
                problems.append(f"order {aggregate}: {event_type} appended {n} times")
        sequences = sorted(r[1] for r in stream)
        if sequences != list(range(1, len(stream) + 1)):
            problems.append(f"order {aggregate}: sequences {sequences} have gaps")
    for order_id, state in by_id.items():
        stream = sorted(streams.get(order_id, []), key=lambda r: r[1])
        outcomes = [r[2] for r in stream if r[2] in OUTCOME_EVENTS]
        if state.status.is_terminal:
            if not stream or stream[-1][2] != f"Order{state.status.value.title()}":
                last = stream[-1][2] if stream else "no events"
                problems.append(f"order {order_id} is {state.status}; its stream ends {last}")
        elif outcomes:
            problems.append(f"order {order_id} is {state.status} but has {outcomes}")
    return check


def projection_tables(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    with Session(engine) as session:
        return {
            table.__tablename__: [  # type: ignore[attr-defined]
                row.model_dump()
                for row in session.scalars(
                    select(table).order_by(*table.__table__.primary_key.columns)  # type: ignore[attr-defined]
                )
            ]
            for table in PROJECTION_TABLES
        }


def compare_projections(
    live: Mapping[str, list[dict[str, Any]]], rebuilt: Mapping[str, list[dict[str, Any]]]
) -> Check:
    rows = sum(len(r) for r in live.values())
    check = Check("projections equal a rebuild from the events", f"{rows} rows")
    for table, live_rows in live.items():
        rebuilt_rows = rebuilt.get(table, [])
        missing = [r for r in rebuilt_rows if r not in live_rows]
        extra = [r for r in live_rows if r not in rebuilt_rows]
        for row in missing[:5]:
            check.violations.append(f"{table}: live lacks {row}")
        for row in extra[:5]:
            check.violations.append(f"{table}: live has {row}, the rebuild does not")
        if len(missing) + len(extra) > 10:
            check.violations.append(f"{table}: {len(missing) + len(extra)} rows differ in all")
    return check


def projections_equal_rebuild(projector: Projector) -> Check:
    """Rebuild in place (the run is over, nothing else writes) and compare with the live rows."""
    live = projection_tables(projector.engine)
    projector.rebuild()
    return compare_projections(live, projection_tables(projector.engine))


def exit_statuses(statuses: Mapping[str, int], unexpected: Sequence[str]) -> Check:
    """Every process stopped with SIGTERM exits 0; none died or failed to restart on its own."""
    check = Check("processes exit as they should", f"{len(statuses)} stopped with SIGTERM")
    for name, status in statuses.items():
        if status != 0:
            check.violations.append(f"{name} exited with status {status} on SIGTERM")
    check.violations += unexpected
    return check


def histories_replay(replayed: int, failures: Sequence[str]) -> Check:
    """Every saga's history replays against the code that ran it: none would be stuck (its
    workflow task failing with a nondeterminism error) on a worker that rebuilds it."""
    return Check("histories replay without nondeterminism", f"{replayed} histories", [*failures])


def api_answers(unexpected: Sequence[str], gave_up: Sequence[str], requests: int) -> Check:
    """The API never answers a 5xx other than 503, and every request got through eventually."""
    check = Check("API: no 5xx but 503, no request given up", f"{requests} orders placed")
    check.violations += [f"API answered {u}" for u in unexpected]
    check.violations += [f"client gave up: {g}" for g in gave_up]
    return check


def book_checks(audit: Mapping[str, list[str]], orders: int) -> list[Check]:
    """One check per area of ``services.reconcile.audit``."""
    names = {
        "stock": "stock: initial = on hand + reserved + sold, >= 0, held only by live orders",
        "money": "money: charged - refunded = completed total - returned (books and provider)",
        "one charge per order": "at most one charge per order (provider ledger)",
        "shipments": "no shipment for a failed or cancelled order",
        "returns": "returns: refunded = restocked, never beyond the charge (books)",
    }
    return [
        Check(names[area], f"{orders} orders", list(problems)) for area, problems in audit.items()
    ]
