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
from cloudmart.contracts.returns import CONSUMERS, RETURNS_STREAM_PREFIX
from services.database import read_only
from services.event_store.models import EventRow
from services.factory import CHOREOGRAPHY
from services.inventory.models import ReturnRestock
from services.loyalty.models import AccountEvent, KnownOrder
from services.payment.models import ReturnRefund
from services.readmodel.projector import PROJECTION_TABLES, Projector
from services.shipping.models import ReturnShipment

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
        sequences = sorted(r[1] for r in stream)
        if sequences != list(range(1, len(stream) + 1)):
            problems.append(f"order {aggregate}: sequences {sequences} have gaps")
        if aggregate.startswith(RETURNS_STREAM_PREFIX):
            # An order's returns (their own check: handled_once); their order must exist.
            if aggregate.removeprefix(RETURNS_STREAM_PREFIX) not in by_id:
                problems.append(f"returns of unknown order {aggregate}")
            continue
        if aggregate not in by_id:
            problems.append(f"events for unknown order {aggregate}")
        types = Counter(r[2] for r in stream)
        for event_type, n in types.items():
            if n > 1:
                problems.append(f"order {aggregate}: {event_type} appended {n} times")
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


# --- returns (docs/returns.md): the choreography's books after the chaos ---------------------

RETURN_ENDS = frozenset({"RETURNED", "REJECTED"})


@dataclass
class ReturnBooks:
    """What every database holds of the returns, read once the stack has stopped."""

    events: list[dict[str, Any]] = field(default_factory=list)
    """The returns' events in the store's order: event_id, aggregate_id, sequence, event_type,
    correlation_id, data."""
    sold: dict[str, int] = field(default_factory=dict)
    """Per sku, units sold in inventory's books."""
    committed: dict[str, int] = field(default_factory=dict)
    """Per sku, units in committed reservations (what completed orders bought)."""
    restocks: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Inventory's restocks by return: lines, unrestocked (None unless the refund was refused)."""
    charges: dict[str, int] = field(default_factory=dict)
    """Payment's charge per order, and below what went back."""
    refunds: dict[str, int] = field(default_factory=dict)
    return_refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    provider_captured: dict[str, int] = field(default_factory=dict)
    """The provider's captured amount per charge reference."""
    provider_refunds: list[tuple[str, str, int]] = field(default_factory=list)
    """The provider's refunds: idempotency key, charge reference, amount."""
    labels: dict[str, int] = field(default_factory=dict)
    """Shipping's return parcels by return (one row per return: the count is what is stored)."""
    account_events: list[tuple[str, int, str, dict[str, Any]]] = field(default_factory=list)
    """Loyalty's account events: account, sequence, type, data."""
    known_orders: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Loyalty's orders: points awarded, points revoked."""
    inboxes: dict[str, list[str]] = field(default_factory=dict)
    """Each return consumer's inbox: the ids of the events it handled."""


def _select(engine: Engine, table: Any, *columns: str) -> list[Any]:
    with read_only(engine).connect() as connection:
        return list(connection.execute(select(*(table.c[c] for c in columns))).all())


def return_books(engines: Mapping[str, Engine]) -> ReturnBooks:
    def table(model: Any) -> Any:
        return model.__table__

    events = [
        row._asdict()
        for row in _select(
            engines["event_store"],
            table(EventRow),
            "position",
            "event_id",
            "aggregate_id",
            "sequence",
            "event_type",
            "correlation_id",
            "data",
        )
        if row.aggregate_id.startswith(RETURNS_STREAM_PREFIX)
    ]
    events.sort(key=lambda e: e["position"])
    inventory, payment = engines["inventory"], engines["payment"]
    committed: Counter[str] = Counter()
    for sku, quantity in _rows(
        inventory,
        "SELECT l.sku, l.quantity FROM reservation_lines l JOIN reservations r"
        " ON r.order_id = l.order_id WHERE r.status = 'COMMITTED'",
    ):
        committed[sku] += quantity
    inboxes: dict[str, list[str]] = {}
    for consumer in CONSUMERS:
        database, tables = CHOREOGRAPHY[consumer]
        inboxes[consumer] = [
            event_id
            for name, event_id in _select(engines[database], tables.inbox, "consumer", "event_id")
            if name == consumer
        ]
    return ReturnBooks(
        events=events,
        sold=dict(_rows(inventory, "SELECT sku, sold FROM products")),
        committed=dict(committed),
        restocks={
            r.return_id: {"lines": r.lines, "unrestocked": r.unrestocked}
            for r in _select(inventory, table(ReturnRestock), "return_id", "lines", "unrestocked")
        },
        charges=dict(_rows(payment, "SELECT order_id, amount_cents FROM charges")),
        refunds=dict(_rows(payment, "SELECT order_id, amount_cents FROM refunds")),
        return_refunds={
            r.return_id: r._asdict()
            for r in _select(
                payment, table(ReturnRefund), "return_id", "order_id", "status", "amount_cents"
            )
        },
        provider_captured=dict(
            _rows(
                engines["payment_provider"],
                "SELECT reference, amount_cents FROM provider_charges WHERE state = 'captured'",
            )
        ),
        provider_refunds=_rows(
            engines["payment_provider"],
            "SELECT idempotency_key, charge_reference, amount_cents FROM provider_refunds",
        ),
        labels=dict(
            Counter(r for (r,) in _select(engines["shipping"], table(ReturnShipment), "return_id"))
        ),
        account_events=[
            (r.account_id, r.sequence, r.event_type, r.data)
            for r in _select(
                engines["loyalty"],
                table(AccountEvent),
                "account_id",
                "sequence",
                "event_type",
                "data",
            )
        ],
        known_orders={
            r.order_id: (r.points_awarded, r.points_revoked)
            for r in _select(
                engines["loyalty"],
                table(KnownOrder),
                "order_id",
                "points_awarded",
                "points_revoked",
            )
        },
        inboxes=inboxes,
    )


def _rows(engine: Engine, sql: str) -> list[Any]:
    with read_only(engine).connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql))]


def _by_return(books: ReturnBooks) -> dict[str, dict[str, dict[str, Any]]]:
    """Each return's events by type (the last of a type, should there be more)."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for event in books.events:
        found.setdefault(event["correlation_id"], {})[event["event_type"]] = event
    return found


def refunds_within_charges(books: ReturnBooks) -> Check:
    """No order had more back than it was charged: in payment's books (its returns' refunds
    and a compensation's), in the provider's ledger per charge, and in the refunds published."""
    check = Check("returns: refunds never exceed charges per order", "")
    back: Counter[str] = Counter(books.refunds)
    for refund in books.return_refunds.values():
        if refund["status"] == "REFUNDED":
            back[refund["order_id"]] += refund["amount_cents"]
    for order_id, amount in sorted(back.items()):
        if amount > books.charges.get(order_id, 0):
            check.violations.append(
                f"order {order_id}: refunded {amount} > charged {books.charges.get(order_id, 0)}"
            )
    by_charge: Counter[str] = Counter()
    for _key, reference, amount in books.provider_refunds:
        by_charge[reference] += amount
    for reference, amount in sorted(by_charge.items()):
        if amount > books.provider_captured.get(reference, 0):
            check.violations.append(f"provider charge {reference}: refunded {amount} > captured")
    published: Counter[str] = Counter()
    for event in books.events:
        if event["event_type"] == "ReturnRefunded":
            published[event["data"]["order_id"]] += event["data"]["amount_cents"]
    for order_id, amount in sorted(published.items()):
        if amount > books.charges.get(order_id, 0):
            check.violations.append(f"order {order_id}: ReturnRefunded {amount} > charged")
    check.counted = f"{len(back)} orders refunded"
    return check


def restocked_equals_accepted(books: ReturnBooks) -> Check:
    """Per sku, the units back in stock (what completed orders bought less what inventory now
    counts as sold) equal the accepted returns' units less those taken out again when a refund
    was refused; and inventory restocked exactly the accepted returns."""
    check = Check("returns: restocked units = accepted units - unrestocked", "")
    accepted: Counter[str] = Counter()
    returns = _by_return(books)
    for return_id, chain in returns.items():
        if "ReturnAccepted" in chain:
            for line in chain["ReturnAccepted"]["data"]["lines"]:
                accepted[line["sku"]] += line["quantity"]
            if return_id not in books.restocks:
                check.violations.append(f"return {return_id} was accepted, never restocked")
        if "StockUnrestocked" in chain:
            for line in chain["StockUnrestocked"]["data"]["unrestocked"]:
                accepted[line["sku"]] -= line["quantity"]
    for return_id in books.restocks:
        if "ReturnAccepted" not in returns.get(return_id, {}):
            check.violations.append(f"return {return_id} was restocked, never accepted")
    for sku in sorted(set(books.committed) | set(accepted)):
        back = books.committed.get(sku, 0) - books.sold.get(sku, 0)
        if back != accepted[sku]:
            check.violations.append(
                f"{sku}: {back} units back in stock, accepted returns less unrestocked "
                f"{accepted[sku]}"
            )
    check.counted = f"{sum(accepted.values())} units"
    return check


def points_never_negative(books: ReturnBooks) -> Check:
    """Every loyalty account's balance stays at or above zero after each of its events, and no
    order has more points revoked than it awarded."""
    check = Check("loyalty points never negative", f"{len(books.account_events)} account events")
    balance: Counter[str] = Counter()
    for account, sequence, event_type, data in sorted(books.account_events, key=lambda e: e[:2]):
        balance[account] += data["points"] * (-1 if event_type == "PointsRevoked" else 1)
        if balance[account] < 0:
            check.violations.append(f"account {account}: {balance[account]} after #{sequence}")
    for order_id, (awarded, revoked) in sorted(books.known_orders.items()):
        if revoked > awarded:
            check.violations.append(f"order {order_id}: {revoked} points revoked of {awarded}")
    return check


def returns_settled(views: Mapping[str, Mapping[str, Any] | None]) -> Check:
    """Every return ended (RETURNED, REJECTED), or is visibly stuck: ``GET /returns/{id}``
    says so, and where it waits and why."""
    check = Check("every return terminal or visibly stuck", "")
    ended = stuck = 0
    for return_id, view in sorted(views.items()):
        status = (view or {}).get("status")
        waiting = (view or {}).get("waiting") or {}
        if status in RETURN_ENDS and not waiting:
            ended += 1
        elif view and view.get("stuck") and waiting.get("service") and waiting.get("awaits"):
            stuck += 1
        else:
            where = f", waiting for {waiting.get('service')}" if waiting else ""
            why = f": {waiting['reason']}" if waiting.get("reason") else ""
            check.violations.append(f"return {return_id} is {status}{where}{why}")
    check.counted = f"{ended} ended, {stuck} stuck of {len(views)}"
    return check


HANDLES = {
    "shipping-returns": ("ReturnRequested", "ReturnRejected"),
    "inventory-returns": ("ReturnAccepted", "ReturnRefundRefused"),
    "payment-returns": ("StockRestocked",),
    "loyalty-returns": ("ReturnRefunded",),
}


def handled_once(books: ReturnBooks) -> Check:
    """No event handled twice: each consumer's inbox holds an event once, and only one it
    handles; each return has each reaction once in the store; and the effects are one each:
    one label per return, one restock per accepted return, one refund per restocked return
    (in payment's books and the provider's), points revoked once per refund."""
    check = Check("returns: no event handled twice (inboxes, effects)", "")
    problems = check.violations
    types = {e["event_id"]: e["event_type"] for e in books.events}
    for consumer, handled in books.inboxes.items():
        for event_id, n in Counter(handled).items():
            if n > 1:
                problems.append(f"{consumer} handled event {event_id} {n} times")
            if types.get(event_id) not in HANDLES[consumer]:
                problems.append(f"{consumer} handled {event_id} ({types.get(event_id)})")
    returns = _by_return(books)
    for return_id, n in Counter(
        (e["correlation_id"], e["event_type"]) for e in books.events
    ).items():
        if n > 1:
            problems.append(f"return {return_id[0]}: {return_id[1]} stored {n} times")
    for return_id, chain in returns.items():
        if "ReturnShipmentCreated" in chain and books.labels.get(return_id) != 1:
            problems.append(f"return {return_id}: {books.labels.get(return_id, 0)} labels")
    for return_id in books.labels:
        if "ReturnRequested" not in returns.get(return_id, {}):
            problems.append(f"return {return_id}: a label for no request")
    refunded = Counter(
        key.removeprefix("return:")
        for key, _, _ in books.provider_refunds
        if key.startswith("return:")
    )
    for return_id, chain in returns.items():
        if "ReturnRefunded" in chain:
            if refunded[return_id] != 1:
                problems.append(f"return {return_id}: {refunded[return_id]} provider refunds")
            if books.return_refunds.get(return_id, {}).get("status") != "REFUNDED":
                problems.append(f"return {return_id}: refunded, payment's books lack it")
    for return_id in refunded:
        if "StockRestocked" not in returns.get(return_id, {}):
            problems.append(f"return {return_id}: refunded by the provider, never restocked")
    revocations: Counter[str] = Counter()
    revoked: Counter[str] = Counter()
    for _account, _sequence, event_type, data in books.account_events:
        if event_type == "PointsRevoked":
            revocations[data["order_id"]] += 1
            revoked[data["order_id"]] += data["points"]
    refunds_per_order: Counter[str] = Counter(
        chain["ReturnRefunded"]["data"]["order_id"]
        for chain in returns.values()
        if "ReturnRefunded" in chain
    )
    for order_id, n in sorted(revocations.items()):
        if n > refunds_per_order[order_id]:
            problems.append(
                f"order {order_id}: points revoked {n} times for {refunds_per_order[order_id]}"
                " refunds"
            )
        if revoked[order_id] != books.known_orders.get(order_id, (0, 0))[1]:
            problems.append(
                f"order {order_id}: {revoked[order_id]} points revoked in the account, "
                f"{books.known_orders.get(order_id, (0, 0))[1]} by the order"
            )
    check.counted = f"{sum(len(h) for h in books.inboxes.values())} events handled"
    return check


def return_checks(books: ReturnBooks, views: Mapping[str, Mapping[str, Any] | None]) -> list[Check]:
    return [
        refunds_within_charges(books),
        restocked_equals_accepted(books),
        points_never_negative(books),
        returns_settled(views),
        handled_once(books),
    ]
