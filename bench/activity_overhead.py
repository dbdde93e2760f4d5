"""What recording a customer's activity adds to a request, and why it is recorded as it is.

    make bench-activity                       # python -m bench.activity_overhead [--rounds 500]

1. The request path, paired: two ``python -m api`` processes on the same databases, one with
   ``CLOUDMART_ACTIVITY_TRACKING`` on and one off, customer tokens required. Each round sends
   the same customer's search (``GET /products?category=…``, recorded as ``searched``) to
   each, the order alternating from round to round, one request at a time. Prints p50 and p95
   of each, and the paired median of each round's difference: what tracking adds.
2. The write itself, in this process, one action at a time, each way it could be made durable
   before the answer: an append to the journal (what the API does), an insert committed into a
   small SQLite database of its own (WAL, ``synchronous=NORMAL``, the sqlite3 module), and the
   activity store's own insert through SQLAlchemy (what storing on the request path would be).

No Temporal is needed: the search reads the read side's projection, which this seeds with the
demo catalog.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from api.tokens import mint
from bench.results import RESULTS, add_results_option, include, publish
from bench.stats import Run, table
from cloudmart.process import exit_now
from cloudmart.settings import Settings
from devstack.processes import API_READY, ManagedProcess, free_port
from devstack.stack import settings_env, throwaway_settings
from services.activity.actions import Recorded
from services.activity.journal import Journal
from services.activity.models import ActivityType
from services.factory import build_activity, build_inventory, build_projector, prepare

WARM_UP = 20
ACTIVITY_DOC = Path(__file__).parents[1] / "docs" / "activity.md"


def seed(settings: Settings) -> None:
    """The demo catalog in inventory and in the read side's product search."""
    inventory = build_inventory(settings, pool_size=1)
    prepare(inventory, settings)
    projector = build_projector(settings)
    prepare(projector, settings)
    projector.sync_catalog()
    for engine in (inventory.engine, projector.engine, projector.store.engine):
        engine.dispose()


def start(settings: Settings, name: str) -> ManagedProcess:
    api = ManagedProcess.start(
        name,
        [sys.executable, "-m", "api"],
        env=settings_env(settings),
        output=None,
        ready_marker=API_READY,
    )
    api.wait_ready(60)
    return api


def request_path(settings: Settings, rounds: int) -> dict[str, list[float]]:
    """Milliseconds per search, by whether tracking was on."""
    apis = {
        "tracking on": settings.model_copy(update={"api_port": free_port()}),
        "tracking off": settings.model_copy(
            update={"api_port": free_port(), "activity_tracking": False}
        ),
    }
    processes = {name: start(config, name) for name, config in apis.items()}
    assert settings.auth_secret is not None
    customer = f"bench-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {mint(customer, settings.auth_secret.get_secret_value())}"}
    taken: dict[str, list[float]] = {name: [] for name in apis}
    try:
        clients = {
            name: httpx.Client(base_url=f"http://127.0.0.1:{config.api_port}", headers=headers)
            for name, config in apis.items()
        }
        names = list(apis)
        for round_ in range(WARM_UP + rounds):
            for name in names if round_ % 2 == 0 else names[::-1]:
                started = time.perf_counter()
                response = clients[name].get("/products", params={"category": "office"})
                ms = (time.perf_counter() - started) * 1000
                response.raise_for_status()
                if round_ >= WARM_UP:
                    taken[name].append(ms)
        recorded = clients["tracking on"].get(f"/customers/{customer}/activity").json()
        if not recorded["items"]:
            raise RuntimeError("tracking on recorded nothing: the comparison would be void")
        for client in clients.values():
            client.close()
    finally:
        for process in processes.values():
            process.stop()
    return taken


def action(n: int) -> Recorded:
    return Recorded(
        customer_id="bench",
        type=ActivityType.SEARCHED,
        data={"filters": {"category": "office"}},
        occurred_at=datetime.now(UTC),
        request_id=f"r-{n}",
        key=f"request:r-{n}",
    )


def writes(settings: Settings, count: int) -> dict[str, list[float]]:
    """Milliseconds per durable write of one action, each way."""
    journal = Journal(settings.data_dir / "bench-journal")
    journal.open()
    local = sqlite3.connect(settings.data_dir / "bench-outbox.db", isolation_level=None)
    local.execute("PRAGMA journal_mode=WAL")
    local.execute("PRAGMA synchronous=NORMAL")
    local.execute("CREATE TABLE outbox (position INTEGER PRIMARY KEY, line TEXT NOT NULL)")
    store = build_activity(settings)
    prepare(store, settings)

    def to_outbox(a: Recorded) -> None:
        local.execute("INSERT INTO outbox (line) VALUES (?)", (a.model_dump_json(),))

    ways: dict[str, Callable[[Recorded], object]] = {
        "journal append (the API's)": journal.append,
        "SQLite outbox insert, committed": to_outbox,
        "activity store insert (SQLAlchemy)": lambda a: store.record([a]),
    }
    taken: dict[str, list[float]] = {name: [] for name in ways}
    for n in range(WARM_UP + count):
        for name, write in ways.items():
            one = action(n)
            started = time.perf_counter()
            write(one)
            if n >= WARM_UP:
                taken[name].append((time.perf_counter() - started) * 1000)
    journal.close(stored=True)
    local.close()
    store.engine.dispose()
    return taken


def report(paths: dict[str, list[float]], written: dict[str, list[float]]) -> str:
    on, off = paths["tracking on"], paths["tracking off"]
    paired = statistics.median(a - b for a, b in zip(on, off, strict=True))
    rows = [
        [
            name,
            str(len(xs)),
            f"{statistics.median(xs):.2f}",
            f"{Run(name, 1, xs, 1).percentile(95):.2f}",
        ]
        for name, xs in paths.items()
    ]
    write_rows = [
        [
            name,
            str(len(xs)),
            f"{statistics.median(xs) * 1000:.0f}",
            f"{Run(name, 1, xs, 1).percentile(95) * 1000:.0f}",
        ]
        for name, xs in written.items()
    ]
    return "\n".join(
        [
            "1. a customer's search (GET /products?category=office, customer token), one at a",
            "time, over HTTP to two API processes on the same SQLite databases, taking turns",
            table(rows, ["API", "N", "p50 ms", "p95 ms"]),
            f"paired p50 of (on - off), what recording adds: {paired:+.2f} ms",
            "",
            "2. one action made durable, in process, one at a time",
            table(write_rows, ["write", "N", "p50 µs", "p95 µs"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500, help="requests to each API")
    parser.add_argument("--writes", type=int, default=2000, help="actions written each way")
    add_results_option(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cloudmart-activity-") as data:
        settings = throwaway_settings(Path(data), require_auth=True)
        seed(settings)
        paths = request_path(settings, args.rounds)
        written = writes(settings, args.writes)
    text = report(paths, written)
    print(text)
    path = publish("activity", text, args.results)
    if args.results.resolve() == RESULTS.resolve():  # docs/activity.md shows the figure too
        include(ACTIVITY_DOC, "results/activity.md", path.read_text())
    print(f"written: {path}")


if __name__ == "__main__":
    main()
    exit_now(0)
