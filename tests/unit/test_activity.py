"""Activity's pure parts: the key that makes a retried request record once, the journal's
claim on a dead process's file, and the recommendations' ranking on fixed data."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from api.activity_tracking import (
    _cancelled,
    _placed,
    _rated,
    _registered,
    _returned,
    _searched,
    _viewed,
    tracked,
)
from services.activity.actions import (
    Recorded,
    activity_event_id,
    activity_key,
    client_request_id,
)
from services.activity.journal import Journal
from services.activity.models import ActivityType
from services.activity.recommendations import Product, Signals, rank, times

# --- keys -------------------------------------------------------------------------------------


def test_the_key_is_the_natural_one_then_the_idempotency_key_then_the_clients_request_id() -> None:
    assert activity_key(natural="o-1", idempotency_key="k", request_id="r") == "natural:o-1"
    assert activity_key(natural=None, idempotency_key="k", request_id="r") == "idempotency:k"
    assert activity_key(natural=None, idempotency_key=None, request_id="r") == "request:r"


def test_without_any_a_request_is_its_own_action() -> None:
    first = activity_key(natural=None, idempotency_key=None, request_id=None)
    second = activity_key(natural=None, idempotency_key=None, request_id=None)
    assert first.startswith("fresh:") and first != second


def test_a_clients_key_never_takes_the_place_of_a_natural_one() -> None:
    # A client sending "natural:o-1" as its Idempotency-Key does not collide with order o-1's.
    assert activity_key(
        natural=None, idempotency_key="natural:o-1", request_id=None
    ) != activity_key(natural="o-1", idempotency_key=None, request_id=None)


def test_the_same_customer_type_and_key_give_the_same_event_id_and_nothing_else_does() -> None:
    placed = activity_event_id("c-1", ActivityType.ORDER_PLACED, "natural:o-1")
    assert placed == activity_event_id("c-1", ActivityType.ORDER_PLACED, "natural:o-1")
    assert placed != activity_event_id("c-2", ActivityType.ORDER_PLACED, "natural:o-1")
    assert placed != activity_event_id("c-1", ActivityType.ORDER_CANCELLED, "natural:o-1")
    assert placed != activity_event_id("c-1", ActivityType.ORDER_PLACED, "natural:o-2")


def test_a_client_request_id_is_kept_only_if_it_is_short_printable_ascii() -> None:
    assert client_request_id("req-42") == "req-42"
    assert client_request_id(None) is None
    assert client_request_id("") is None
    assert client_request_id("has space") is None
    assert client_request_id("x" * 129) is None
    assert client_request_id("x" * 128) == "x" * 128


# --- the journal ----------------------------------------------------------------------------


def action(n: int) -> Recorded:
    return Recorded(
        customer_id="c-1",
        type=ActivityType.SEARCHED,
        data={"filters": {"q": f"lamp {n}"}},
        occurred_at=datetime(2026, 12, 1, tzinfo=UTC),
        request_id=f"r-{n}",
        key=f"request:r-{n}",
    )


def test_a_live_writers_file_is_not_claimed_but_a_dead_ones_is(tmp_path: Path) -> None:
    writer = Journal(tmp_path)
    writer.open()
    writer.append(action(1))
    assert Journal(tmp_path).orphans() == []  # its writer holds it

    # A process that appends and dies without closing: its file is an orphan.
    script = (
        "import sys; from pathlib import Path; from tests.unit.test_activity import action; "
        "from services.activity.journal import Journal; j = Journal(Path(sys.argv[1])); "
        "j.open(); j.append(action(2)); j.append(action(3)); import os; os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True)
    orphans = writer.orphans()
    assert len(orphans) == 1
    assert [a.request_id for a in orphans[0].actions()] == ["r-2", "r-3"]
    assert Journal(tmp_path).orphans() == []  # claimed by us meanwhile
    orphans[0].discard()
    assert [p.name for p in tmp_path.iterdir()] == [writer.path.name]  # type: ignore[union-attr]
    writer.close(stored=True)
    assert list(tmp_path.iterdir()) == []


def test_a_torn_last_line_is_skipped_and_the_rest_is_read(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.open()
    journal.append(action(1))
    assert journal.path is not None
    with open(journal.path, "ab") as file:
        file.write(b'{"customer_id": "c-1", "ty')  # a power cut mid-line
    journal.close(stored=False)
    (orphan,) = Journal(tmp_path).orphans()
    assert [a.request_id for a in orphan.actions()] == ["r-1"]


def test_rotating_starts_a_new_file_and_deletes_the_stored_one(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.open()
    journal.append(action(1))
    first = journal.path
    journal.rotate()
    assert journal.path != first and journal.size == 0
    assert [p.name for p in tmp_path.iterdir()] == [journal.path.name]  # type: ignore[union-attr]
    journal.append(action(2))
    assert os.path.getsize(journal.path) == journal.size  # type: ignore[arg-type]
    journal.close(stored=True)


# --- recommendations ----------------------------------------------------------------------

CATALOG = [
    Product("BOOK-1", "A Novel", "books", 1500, 5),
    Product("BOOK-2", "Poems", "books", 900, 3),
    Product("BOOK-3", "Atlas", "books", 4000, 0),  # out of stock
    Product("LAMP-1", "Desk lamp", "home", 3900, 7),
    Product("MUG-1", "Mug", "home", 800, 20),
    Product("PEN-1", "Pen", "office", 200, 100),
    Product("PAD-1", "Notepad", "office", 300, 100),
]

SHUFFLED = [CATALOG[i] for i in (6, 3, 1, 5, 0, 2, 4)]
"""The catalog in no particular order: ties are broken by sku, not by the catalog's order."""


def skus(signals: Signals, limit: int = 10) -> list[tuple[str, int]]:
    return [(r.sku, r.score) for r in rank(SHUFFLED, signals, limit)]


def test_nothing_known_recommends_nothing() -> None:
    assert rank(CATALOG, Signals()) == []


def test_bought_and_out_of_stock_products_are_never_recommended() -> None:
    signals = Signals(
        bought=frozenset({"BOOK-1"}),
        viewed={"BOOK-1": 4, "BOOK-3": 4, "MUG-1": 1},
        others={"c-2": frozenset({"BOOK-1", "BOOK-3", "BOOK-2"})},
    )
    # BOOK-2: a co-purchase (3) and a category bought from (1); MUG-1 viewed once (2).
    assert skus(signals) == [("BOOK-2", 4), ("MUG-1", 2)]


def test_co_purchases_count_each_other_customer_and_name_the_shared_product() -> None:
    signals = Signals(
        bought=frozenset({"PEN-1", "LAMP-1"}),
        others={
            "c-2": frozenset({"PEN-1", "PAD-1"}),
            "c-3": frozenset({"PEN-1", "LAMP-1", "PAD-1", "MUG-1"}),
            "c-4": frozenset({"MUG-1"}),  # shares nothing with the customer: no signal
        },
    )
    ranked = rank(SHUFFLED, signals)
    assert [(r.sku, r.score) for r in ranked] == [("PAD-1", 7), ("MUG-1", 4)]
    pad, mug = ranked
    # PAD-1: two customers (6) who bought the pen (the most shared), in a category bought (1).
    assert pad.reasons == [
        "bought by customers who bought Pen",
        "in a category you bought from: office",
    ]
    # MUG-1: one customer, who bought both the lamp and the pen: ties by sku, so LAMP-1.
    assert mug.reason == "bought by customers who bought Desk lamp"
    assert mug.reasons[1] == "in a category you bought from: home"


def test_views_and_searches_rank_and_say_so() -> None:
    signals = Signals(viewed={"LAMP-1": 2, "PEN-1": 9}, searched={"books": 2, "office": 7})
    ranked = rank(SHUFFLED, signals)
    assert [(r.sku, r.score) for r in ranked] == [
        ("PEN-1", 13),  # 5 views counted (10) and the office searches, at most 3
        ("LAMP-1", 4),
        ("PAD-1", 3),
        ("BOOK-1", 2),  # ties by sku: BOOK-1 before BOOK-2
        ("BOOK-2", 2),
    ]
    assert ranked[0].reasons == ["you viewed it 9 times", "in a category you searched: office"]
    assert ranked[1].reason == "you viewed it twice"
    assert ranked[3].reason == "in a category you searched: books"


def test_the_limit_keeps_the_best() -> None:
    signals = Signals(searched={"books": 1, "office": 1, "home": 1})
    assert skus(signals, limit=3) == [("BOOK-1", 1), ("BOOK-2", 1), ("LAMP-1", 1)]


def test_times() -> None:
    assert [times(n) for n in (1, 2, 3)] == ["once", "twice", "3 times"]


# --- which answers record what --------------------------------------------------------------


def test_each_tracked_route_is_recognised_and_nothing_else() -> None:
    order = "3f2b8c1e-7d4a-4e8b-9a61-3c0d2e9f7b44"
    expected = {
        ("GET", "/products"): _searched,
        ("GET", "/products/SKU-A"): _viewed,
        ("POST", "/orders"): _placed,
        ("POST", f"/orders/{order}/cancel"): _cancelled,
        ("POST", f"/orders/{order}/returns"): _returned,
        ("POST", "/products/SKU-A/ratings"): _rated,
        ("POST", "/customers"): _registered,
    }
    for (method, path), actions in expected.items():
        found = tracked(method, path)
        assert found is not None and found[0].actions is actions, (method, path)
    found = tracked("GET", "/products/SKU-A")
    assert found is not None and found[1]["sku"] == "SKU-A"
    for method, path in (
        ("GET", "/orders"),
        ("POST", "/products"),
        ("GET", "/products/SKU-A/ratings"),
        ("POST", "/orders/not-an-order/cancel"),
        ("POST", "/orders/not-an-order/returns"),
        ("POST", f"/orders/{order}/payment-review"),
        ("GET", "/customers/c-1/activity"),
    ):
        assert tracked(method, path) is None, (method, path)
