"""The chaos run (``make chaos``), short: 40 orders, 5 of them returned, while the worker is
SIGKILLed every 2.5 s (the return consumers' process while returns run), Temporal once, a
service database and the event store's go away; every check passes. Then each check is shown to
fail when the books it reads are broken: a check that cannot fail proves nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from chaos import checks
from chaos.load import one_run
from chaos.replay import replay_each
from chaos.report import render
from chaos.run import Options, Report, books, run
from cloudmart.contracts.orders import OrderItem, OrderState, OrderStatus
from cloudmart.settings import DATABASES
from services.database import create_db_engine
from tests.support import TEST_CONVERTER
from tests.workflows.test_replay import HISTORIES
from workflows.order_saga import OrderSaga


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    options = Options(
        orders=40,
        concurrency=10,
        kill_every=2.5,
        outage_seconds=4,
        settle_timeout=90,
        seed=7,
        returns=5,
        data_dir=tmp_path_factory.mktemp("chaos"),
    )
    return run(options)


def test_a_short_chaos_run_breaks_nothing(report: Report) -> None:
    assert report.violations == [], render(report)
    assert report.kills["worker"] >= 1 and report.kills["temporal"] == 1
    assert report.kill_statuses == {-9: sum(report.kills.values())}
    assert report.temporal_restarts == 1
    assert report.outage is not None and report.outage[1] >= 4
    assert report.exit_statuses == {"api": 0, "worker": 0, "worker-subscribers": 0, "temporal": 0}
    assert sum(report.outcomes.values()) == 40
    assert {"COMPLETED", "FAILED"} <= set(report.outcomes)
    assert "VERDICT: PASS" in render(report)
    # Returns: part and whole, accepted and rejected, one refund refused for good (stuck), while
    # their consumers were killed and the event store was away.
    assert sum(report.returns.values()) == 5, report.returns
    assert report.returns.keys() == {"RETURNED", "REJECTED", "REFUND_REFUSED (stuck)"}
    assert report.kills_mid_return >= 1
    assert report.event_store_outage is not None and report.event_store_outage >= 4


def sql(report: Report, database: str, statement: str, **params: str) -> None:
    engine = create_db_engine(report.settings.db_url(database), pool_size=1)
    try:
        with engine.begin() as connection:
            connection.execute(text(statement), params)
    finally:
        engine.dispose()


def failing(report: Report) -> dict[str, list[str]]:
    found = books(report.settings, report.states, len(report.states), report.return_views)
    return {check.name: check.violations for check in found if not check.passed}


def test_the_checks_fail_on_broken_books_after_a_run(report: Report) -> None:
    returned = {v["order_id"] for v in report.return_views.values() if v}
    done = next(
        s.order_id
        for s in report.states
        if s.status is OrderStatus.COMPLETED and s.order_id not in returned
    )
    failed = next(s.order_id for s in report.states if s.status is OrderStatus.FAILED)
    assert failing(report) == {}

    sql(report, "payment", "UPDATE charges SET amount_cents = 1 WHERE order_id = :o", o=done)
    sql(
        report,
        "shipping",
        "INSERT INTO shipments (order_id, status, created_at, updated_at)"
        " VALUES (:o, 'CREATED', '2026-01-01', '2026-01-01')",
        o=failed,
    )
    sql(
        report,
        "readmodel",
        "UPDATE order_summary SET status = 'FAILED' WHERE order_id = :o",
        o=done,
    )
    broken = failing(report)

    money = "money: charged - refunded = completed total - returned (books and provider)"
    assert f"completed order {done}: charge CAPTURED 1" in broken[money]
    assert broken["no shipment for a failed or cancelled order"] == [
        f"order {failed} is FAILED but was shipped"
    ]
    assert any(done in v for v in broken["projections equal a rebuild from the events"])
    assert len(broken) == 3  # the rest still passes; the rebuild restored the projections
    assert failing(report).keys() == broken.keys() - {"projections equal a rebuild from the events"}

    # An event stored again, under the next sequence (what a retried append must never do).
    sql(
        report,
        "event_store",
        "INSERT INTO events (event_id, aggregate_id, sequence, event_type, data, version,"
        " occurred_at, user_id, recorded_at) SELECT 'again', aggregate_id,"
        " (SELECT MAX(sequence) + 1 FROM events WHERE aggregate_id = :o), event_type, data,"
        " version, occurred_at, user_id, recorded_at FROM events"
        " WHERE aggregate_id = :o AND sequence = 1",
        o=done,
    )
    engine = create_db_engine(report.settings.db_url("event_store"), pool_size=1)
    try:
        events = checks.events_once(checks.event_rows(engine), report.states).violations
    finally:
        engine.dispose()
    assert f"order {done}: OrderPlaced appended 2 times" in events
    assert f"order {done} is COMPLETED; its stream ends OrderPlaced" in events


def test_the_return_checks_fail_on_broken_books_after_a_run(report: Report) -> None:
    """Each invariant of the returns, broken in the books the run left: a unit counted sold
    again, a refund beyond the charge, points revoked beyond those awarded, a label lost, and a
    return shown waiting without being stuck."""
    views = report.return_views
    refunded = next(v for v in views.values() if v and v["status"] == "RETURNED")
    order_id, sku = refunded["order_id"], refunded["lines"][0]["sku"]
    sql(
        report,
        "inventory",
        "UPDATE products SET sold = sold + 1, stock_on_hand = stock_on_hand - 1 WHERE sku = :s",
        s=sku,
    )
    sql(
        report,
        "payment",
        "UPDATE return_refunds SET amount_cents = 99999999 WHERE return_id = :r",
        r=refunded["return_id"],
    )
    sql(
        report,
        "loyalty",
        "UPDATE known_orders SET points_revoked = points_awarded + 1 WHERE order_id = :o",
        o=order_id,
    )
    sql(
        report,
        "shipping",
        "DELETE FROM return_shipments WHERE return_id = :r",
        r=refunded["return_id"],
    )
    waiting = {
        **refunded,
        "status": "REFUNDING",
        "stuck": False,
        "waiting": {"service": "payment", "awaits": "a refund", "reason": "not read that far"},
    }
    engines = {
        name: create_db_engine(report.settings.db_url(name), pool_size=1) for name in DATABASES
    }
    try:
        found = checks.return_checks(
            checks.return_books(engines), {**views, refunded["return_id"]: waiting}
        )
    finally:
        for engine in engines.values():
            engine.dispose()
    broken = {c.name: c.violations for c in found if not c.passed}
    assert len(broken) == 5, broken
    assert f"order {order_id}: refunded 99999999 > charged" in " ".join(
        broken["returns: refunds never exceed charges per order"]
    )
    assert any(
        v.startswith(f"{sku}: ")
        for v in broken["returns: restocked units = accepted units - unrestocked"]
    )
    assert any(order_id in v for v in broken["loyalty points never negative"])
    assert broken["every return terminal or visibly stuck"] == [
        f"return {refunded['return_id']} is REFUNDING, waiting for payment: not read that far"
    ]
    assert (
        f"return {refunded['return_id']}: 0 labels"
        in (broken["returns: no event handled twice (inboxes, effects)"])
    )


def test_a_balance_below_zero_on_the_way_or_an_event_handled_twice_fails() -> None:
    """What the broken books above cannot show: a balance negative between two events (its
    total back at zero), and a consumer's inbox holding an event twice."""
    events = [
        ("c-1", 1, "PointsAwarded", {"points": 5, "order_id": "o-1"}),
        ("c-1", 2, "PointsRevoked", {"points": 7, "order_id": "o-1"}),
        ("c-1", 3, "PointsAwarded", {"points": 2, "order_id": "o-2"}),
    ]
    assert checks.points_never_negative(checks.ReturnBooks(account_events=events)).violations == [
        "account c-1: -2 after #2"
    ]
    requested = {
        "event_id": "e-1",
        "aggregate_id": "order-returns-o-1",
        "sequence": 1,
        "event_type": "ReturnRequested",
        "correlation_id": "r-1",
        "data": {"order_id": "o-1", "lines": []},
    }
    twice = checks.ReturnBooks(events=[requested], inboxes={"shipping-returns": ["e-1", "e-1"]})
    assert checks.handled_once(twice).violations == ["shipping-returns handled event e-1 2 times"]


NOW = datetime.now(UTC)


def state(order_id: str, status: OrderStatus) -> OrderState:
    return OrderState(
        order_id=order_id,
        customer_id="c",
        status=status,
        items=[OrderItem(sku="SKU-A", quantity=1)],
        created_at=NOW,
        updated_at=NOW,
    )


def test_the_event_check_finds_repeats_gaps_and_missing_outcomes() -> None:
    good = [("o-1", 1, "OrderPlaced", "e1"), ("o-1", 2, "OrderCompleted", "e2")]
    assert checks.events_once(good, [state("o-1", OrderStatus.COMPLETED)]).passed
    found = checks.events_once(
        [
            *good,
            ("o-1", 2, "OrderCompleted", "e2"),
            ("o-2", 1, "OrderPlaced", "e3"),
            ("o-2", 3, "OrderFailed", "e4"),
        ],
        [state("o-1", OrderStatus.COMPLETED), state("o-2", OrderStatus.CANCELLED)],
    ).violations
    assert "order o-1: sequence 2 stored 2 times" in found
    assert "event e2 stored 2 times" in found
    assert "order o-1: OrderCompleted appended 2 times" in found
    assert "order o-2: sequences [1, 3] have gaps" in found
    assert "order o-2 is CANCELLED; its stream ends OrderFailed" in found
    live = checks.events_once(good, [state("o-1", OrderStatus.CHARGING_PAYMENT)]).violations
    assert live == ["order o-1 is CHARGING_PAYMENT but has ['OrderCompleted']"]


def test_unfinished_sagas_and_bad_exit_statuses_fail() -> None:
    ended = checks.terminal(
        {"o-1": {"status": "COMPLETED"}, "o-2": {"status": "COMPENSATING"}, "o-3": None}, 60, 2
    )
    assert ended.violations == [
        "2 saga execution(s) still running (-1: unknown)",
        "order o-2 is still COMPENSATING",
        "order o-3 is still None",
    ]
    assert ended.counted == "1/3 ended"
    stopped = checks.exit_statuses({"api": 0, "worker": -6}, ["worker died on its own (status 1)"])
    assert stopped.violations == [
        "worker exited with status -6 on SIGTERM",
        "worker died on its own (status 1)",
    ]
    assert not checks.api_answers(["POST /orders: 500 boom"], [], 1).passed


async def test_a_history_the_code_would_not_issue_fails_the_replay_check() -> None:
    """The replay check on a recorded saga, as recorded and with one step's activity renamed
    (what a change to the saga without a patch amounts to)."""
    recorded = (HISTORIES / "order-saga-1.0" / "completed.json").read_text()
    tampered = recorded.replace('"name": "payment.charge"', '"name": "payment.charge_twice"')
    assert tampered != recorded
    replayer = Replayer(workflows=[OrderSaga], data_converter=TEST_CONVERTER)
    histories = {
        "o-1": WorkflowHistory.from_json("order-o-1", recorded),
        "o-2": WorkflowHistory.from_json("order-o-2", tampered),
    }
    failures = await replay_each(replayer, histories)
    assert len(failures) == 1 and failures[0].startswith("order o-2: ")
    assert "nondetermin" in failures[0].lower()
    check = checks.histories_replay(len(histories), failures)
    assert not check.passed and check.counted == "2 histories"


def test_a_client_process_under_load_ends_every_saga_and_exits_0() -> None:
    """``make load``, small: 60 sagas at concurrency 50 from a child process whose exit status
    is checked (it once died under such a load), on a stack whose processes must all exit 0."""
    row, ok = one_run(1, sagas=60, concurrency=50, plain_exit=False)
    assert ok, row
    assert row[1] == "60/60" and row[5] == "0"
