"""One chaos run: a stack of its own, the load and the faults, the settle phase, the checks."""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from chaos import checks
from chaos.client import ChaosClient
from chaos.faults import Faults
from chaos.orders import Load, plan
from chaos.replay import replay_failures
from cloudmart.contracts.orders import OrderState
from cloudmart.settings import DATABASES, Settings
from devstack.binaries import find_binary
from devstack.stack import DevStack, postgres_databases, settings_env, throwaway_settings
from services.database import create_db_engine
from services.factory import build_projector
from services.inventory.catalog import DEMO_CATALOG
from services.reconcile import audit

POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
STOP_ORDER = ("api", "worker", "temporal")
"""Stopped in this order at the end whatever order the restarts left: clients first."""


@dataclass(frozen=True)
class Options:
    orders: int = 300
    concurrency: int = 20
    split: bool = False
    postgres: bool = False
    postgres_url: str = POSTGRES_ADMIN_URL
    kill_every: float = 4.0
    outage_seconds: float = 10.0
    temporal_down: float = 3.0
    follow_seconds: float = 5.0
    seed: int = 1
    returns: int = 30
    """Completed orders returned (part or whole, some rejected, one refund refused for good)."""
    settle_timeout: float = 120.0
    data_dir: Path | None = None
    """Where the stack keeps its state (default: a temporary directory, removed afterwards)."""


@dataclass
class Report:
    options: Options
    outcomes: dict[str, int]
    kills: dict[str, int]
    kill_statuses: dict[int, int]
    temporal_restarts: int
    outage: tuple[str, float] | None
    retries: dict[str, int]
    cancels: dict[str, int]
    reviews: dict[str, int]
    load_seconds: float
    settle_seconds: float
    checks: list[checks.Check]
    exit_statuses: dict[str, int]
    settings: Settings
    states: list[OrderState]
    """The orders' last states seen (what the books are checked against)."""
    returns: dict[str, int] = field(default_factory=dict)
    """The returns by how they ended (their status; stuck ones as ``<status> (stuck)``)."""
    inspections: dict[str, int] = field(default_factory=dict)
    return_views: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    """Every return as ``GET /returns/{id}`` showed it before the stack stopped."""
    kills_mid_return: int = 0
    event_store_outage: float | None = None
    returns_during_outage: int = 0
    fault_log: list[str] = field(default_factory=list)
    kept: Path | None = None
    """Where the run's state and logs (``logs/stack.log``) were kept."""

    @property
    def violations(self) -> list[str]:
        return [f"{c.name}: {v}" for c in self.checks for v in c.violations]


def run(options: Options) -> Report:
    """The run; its state and logs are removed after a pass and kept (``Report.kept``) after a
    violation, to find out why."""
    data_dir = options.data_dir or Path(tempfile.mkdtemp(prefix="cloudmart-chaos-"))
    if not options.postgres:
        report = _run(options, data_dir, admin=None, urls={})
    else:
        with postgres_databases(options.postgres_url, prefix="chaos") as (admin, urls):
            report = _run(options, data_dir, admin=admin, urls=urls)
    if options.data_dir is None and not report.violations:
        shutil.rmtree(data_dir, ignore_errors=True)
    else:
        report.kept = data_dir
    return report


def _run(options: Options, data_dir: Path, *, admin: Engine | None, urls: dict[str, str]) -> Report:
    settings = throwaway_settings(
        data_dir, task_queue_prefix=f"chaos-{uuid.uuid4().hex[:6]}", **urls
    )
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    log = (data_dir / "logs" / "stack.log").open("a")
    stack = DevStack(
        settings, settings_env(settings), output=log, persist=True, split=options.split
    )
    rng = random.Random(options.seed)
    planned = plan(options.orders, options.seed, options.returns)
    statuses: dict[str, int] = {}
    stack.start()
    assert settings.operator_token is not None  # throwaway settings always have one
    client = ChaosClient(stack.api_url, operator_token=settings.operator_token.get_secret_value())
    load = Load(client, planned, options.concurrency, options.follow_seconds)
    faults = Faults(
        stack,
        kill_every=options.kill_every,
        outage_seconds=options.outage_seconds,
        temporal_down=options.temporal_down,
        progress=lambda: load.done / max(1, len(planned)),
        rng=rng,
        admin=admin,
        returning=load.returning,
        return_workers=return_workers(stack) if options.returns else (),
    )
    reviewing = threading.Event()
    reviewer: threading.Thread | None = None
    views: dict[str, dict[str, Any] | None] = {}
    try:
        reviewer = load.review_in_background(reviewing)
        started = time.monotonic()
        faults.start()
        load.run(patience=options.settle_timeout)
        load_seconds = time.monotonic() - started
        faults.stop()
        settled = time.monotonic()
        _settle(load, settled + options.settle_timeout)
        running = wait_until_closed(settings, settled + options.settle_timeout)
        _settle_returns(load, settled + options.settle_timeout)
        views = _return_views(load, settings)
        settle_seconds = time.monotonic() - settled
        replayed = replay_failures(settings, load.order_ids.values())
        _wait_for_projector(settings, time.monotonic() + 60)
    finally:
        reviewing.set()
        faults.stop()  # again, harmless; first, if the load itself broke
        if reviewer is not None:
            reviewer.join(30)  # before its client closes under it
        client.close()
        statuses = _stop(stack)

    states = {order_id: load.states.get(order_id) for order_id in load.order_ids.values()}
    ended = [OrderState.model_validate(s) for s in states.values() if s is not None]
    found = [checks.terminal(states, options.settle_timeout, running)]
    found += books(settings, ended, len(states), views)
    found.append(checks.exit_statuses(statuses, faults.unexpected))
    found.append(checks.api_answers(client.unexpected, load.gave_up, load.placed))
    found.append(checks.histories_replay(*replayed))
    outcomes: dict[str, int] = {}
    for state in states.values():
        status = (state or {}).get("status", "UNKNOWN")
        outcomes[status] = outcomes.get(status, 0) + 1
    return Report(
        options=options,
        outcomes=outcomes,
        kills=dict(faults.kills),
        kill_statuses=dict(faults.kill_statuses),
        temporal_restarts=faults.temporal_restarts,
        outage=faults.outage,
        retries=dict(client.retries),
        cancels=load.cancels,
        reviews=load.reviews,
        load_seconds=load_seconds,
        settle_seconds=settle_seconds,
        checks=found,
        exit_statuses=statuses,
        settings=settings,
        states=ended,
        returns=dict(
            Counter(
                f"{v['status']} (stuck)" if v["stuck"] else v["status"]
                for v in views.values()
                if v is not None
            )
        ),
        inspections=load.inspections,
        return_views=views,
        kills_mid_return=faults.kills_mid_return,
        event_store_outage=faults.event_store_outage,
        returns_during_outage=faults.returns_during_outage,
        fault_log=faults.log,
    )


def return_workers(stack: DevStack) -> tuple[str, ...]:
    """The processes running the return saga's consumers: one each when split, else the
    subscribers' process."""
    split = tuple(n for n in stack.worker_names if n.endswith("-returns"))
    return split or tuple(n for n in stack.worker_names if n == "worker-subscribers")


def _settle_returns(load: Load, deadline: float) -> None:
    """Follow every return that has not ended (or got stuck) yet, inspecting its parcel."""
    while time.monotonic() < deadline:
        unsettled = load.unsettled_returns()
        if not unsettled:
            return
        for return_id in unsettled:
            load.follow_return(return_id, min(deadline, time.monotonic() + 1))
        time.sleep(0.3)


def _return_views(load: Load, settings: Settings) -> dict[str, dict[str, Any] | None]:
    """Every return the store holds (the customers' and any other), as ``GET /returns/{id}``
    shows it now: the stack still runs."""
    store = create_db_engine(settings.db_url("event_store"), pool_size=1)
    try:
        with store.connect() as connection:
            ids = connection.execute(
                text("SELECT correlation_id FROM events WHERE event_type = 'ReturnRequested'")
            ).scalars()
            return_ids = sorted({*ids, *load.returns})
    finally:
        store.dispose()
    views: dict[str, dict[str, Any] | None] = {}
    for return_id in return_ids:
        answer = load.client.call(
            "poll", "GET", f"/returns/{return_id}", deadline=time.monotonic() + 10
        )
        views[return_id] = answer.json() if answer.status_code == 200 else None
    return views


def _settle(load: Load, deadline: float) -> None:
    """Follow every order that has not ended yet, until all have or the deadline passes."""
    while time.monotonic() < deadline:
        unfinished = load.unfinished()
        if not unfinished:
            return
        for order_id in unfinished:
            load.follow(order_id, min(deadline, time.monotonic() + 1))
        time.sleep(0.5)


def wait_until_closed(settings: Settings, deadline: float) -> int:
    """Until no saga's execution is still running; how many still are at the deadline.

    A saga reports its outcome (the state query) before it has stored its last events, and
    ends only once they are: the books are checked when every execution has closed."""
    command = [
        *(find_binary("temporal"), "workflow", "count"),
        *("--address", settings.temporal_address, "-n", settings.temporal_namespace),
        *("--query", 'ExecutionStatus="Running"'),
    ]
    running = -1
    while time.monotonic() < deadline:
        counted = subprocess.run(command, capture_output=True, text=True)
        if counted.returncode == 0:
            running = int(counted.stdout.split()[-1])
            if running == 0:
                return 0
        time.sleep(0.5)
    return running


def _wait_for_projector(settings: Settings, deadline: float) -> None:
    """Until the read side has every event (it follows the store: eventually consistent)."""
    orders = create_db_engine(settings.db_url("event_store"), pool_size=1)
    readmodel = create_db_engine(settings.db_url("readmodel"), pool_size=1)
    try:
        while time.monotonic() < deadline:
            with orders.connect() as connection:
                head = connection.execute(text("SELECT MAX(position) FROM events")).scalar()
            with readmodel.connect() as connection:
                done = connection.execute(text("SELECT MAX(position) FROM checkpoints")).scalar()
            if head is None or done == head:
                return
            time.sleep(0.3)
    finally:
        orders.dispose()
        readmodel.dispose()


def _stop(stack: DevStack) -> dict[str, int]:
    statuses = {}
    names = sorted(stack.processes, key=lambda n: STOP_ORDER.index(n.split("-")[0]))
    for name in names:
        statuses[name] = stack.processes.pop(name).stop()
    statuses.update(stack.stop())
    return statuses


def books(
    settings: Settings,
    states: list[OrderState],
    orders: int,
    views: dict[str, dict[str, Any] | None],
) -> list[checks.Check]:
    """The checks of the stopped stack's databases: the services' books, the event store, the
    returns' (``views``: each return as ``GET /returns/{id}`` last showed it), and the
    projections against a rebuild (done in place: nothing else writes any more)."""
    engines = {name: create_db_engine(settings.db_url(name), pool_size=1) for name in DATABASES}
    projector = build_projector(settings)
    try:
        _, by_area = audit(
            states,
            inventory=engines["inventory"],
            payment=engines["payment"],
            shipping=engines["shipping"],
            provider=engines["payment_provider"],
            initial_stock={p.sku: p.stock for p in DEMO_CATALOG},
        )
        found = checks.book_checks(by_area, orders)
        found.append(checks.events_once(checks.event_rows(engines["event_store"]), states))
        found += checks.return_checks(checks.return_books(engines), views)
        found.append(checks.projections_equal_rebuild(projector))
        return found
    finally:
        for engine in engines.values():
            engine.dispose()
        projector.engine.dispose()
        projector.store.engine.dispose()
