"""The benchmarks' extras (DBOS Transact, the peer baseline; py-spy) are theirs alone: the product
neither depends on them nor imports them. And bench/profile_saga.py's parsing and table, on a
made-up run (the real one needs a stack and py-spy: make bench-profile)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from bench import profile_saga as profile
from bench.timed_worker import _marking

ROOT = Path(__file__).parent.parent
PRODUCT = ("cloudmart", "services", "activities", "workflows", "api", "chaos", "worker.py")


def test_dbos_is_only_in_the_bench_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    names = {
        group: {re.split(r"[<>=!\[ ]", spec)[0].lower() for spec in specs}
        for group, specs in {"product": project["dependencies"], **extras}.items()
    }
    assert "dbos" in names["bench"]
    assert [group for group, found in names.items() if "dbos" in found] == ["bench"]
    pinned = (ROOT / "constraints.txt").read_text().splitlines()
    assert any(line.startswith("dbos==") for line in pinned)


def test_no_product_module_imports_dbos() -> None:
    files = [
        path
        for part in PRODUCT
        for path in ([ROOT / part] if part.endswith(".py") else (ROOT / part).rglob("*.py"))
    ]
    assert len(files) > 50
    importing = [
        str(path.relative_to(ROOT))
        for path in files
        if re.search(r"^\s*(import dbos|from dbos\b)", path.read_text(), re.MULTILINE)
    ]
    assert importing == []
    assert re.search(r"^from dbos import", (ROOT / "bench/dbos_saga.py").read_text(), re.M)


def test_py_spy_is_only_in_the_bench_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"product": project["dependencies"], **project["optional-dependencies"]}
    having = [group for group, specs in groups.items() if any("py-spy" in s for s in specs)]
    assert having == ["bench"]
    assert "py-spy==" in (ROOT / "constraints.txt").read_text()


# --- bench/profile_saga.py: its parsing and its table, from a made-up saved run -------------

LOOP = "thread (100): MainThread;<module> (worker.py:276);BaseEventLoop._run_once (asyncio/b.py:1)"
PROFILE_LINES = {
    "worker-gil": [
        # 30 samples re-importing the workflow module for a new saga
        f"{LOOP};_WorkflowWorker._create_workflow_instance (temporalio/worker/_workflow.py:746)"
        ";SourceLoader.source_to_code (<frozen importlib._bootstrap_external>:1004) 30",
        # 10 encrypting a workflow task's payloads
        f"{LOOP};_encode (temporalio/worker/_workflow.py:1);EncryptionCodec.encrypt "
        "(cloudmart/codec.py:120) 10",
        # 20 in SQLAlchemy in an activity thread, 5 of them opening the session
        "thread (201): p-1-payment_3;_WorkItem.run (concurrent/futures/thread.py:58)"
        ";_execute_sync_activity (temporalio/worker/_activity.py:983)"
        ";PaymentService.charge (services/payment/service.py:90)"
        ";Session._execute_internal (sqlalchemy/orm/session.py:2445) 15",
        "thread (201): p-1-payment_3;_execute_sync_activity (temporalio/worker/_activity.py:983)"
        ";transaction (services/database.py:110);_begin_immediate (services/database.py:95)"
        ";DefaultDialect.do_execute (sqlalchemy/engine/default.py:951) 5",
        # the projector, and a Rust thread holding the GIL with no Python frames
        "thread (300): asyncio_0;_worker (concurrent/futures/thread.py:83)"
        ";Projector.run_once (services/readmodel/projector.py:45) 8",
        "thread (301) 4",
    ],
    "api-gil": [
        "thread (400): MainThread;run_endpoint_function (fastapi/routing.py:1)"
        ";place_order (api/routes/orders.py:60);Sagas.place (api/sagas.py:90)"
        ";Client.start_workflow (temporalio/client.py:1) 6",
        "thread (400): MainThread;request_body_to_args (fastapi/dependencies/utils.py:1) 4",
    ],
    "worker-idle": [
        "thread (201): p-1-payment_3;_execute_sync_activity (temporalio/worker/_activity.py:983)"
        ";_begin_immediate (services/database.py:95)"
        ";DefaultDialect.do_execute (sqlalchemy/engine/default.py:951) 40",
        "thread (201): p-1-payment_3;_worker (concurrent/futures/thread.py:81) 500",
    ],
    "worker-idle-c1": [
        "thread (201): p-1-payment_3;_execute_sync_activity (temporalio/worker/_activity.py:983)"
        ";Session.scalars (sqlalchemy/orm/session.py:2676)"
        ";DefaultDialect.do_execute (sqlalchemy/engine/default.py:951) 12",
    ],
}


def _phase(concurrency: int, sagas: int, **more: object) -> dict[str, object]:
    phases = ("WFT wait", "WFT run", "activity wait", "activity run", "total")
    return more | {
        "concurrency": concurrency,
        "seconds": 10.0,
        "sagas": sagas,
        "post_ms": [20.0, 30.0, 40.0],
        "end_to_end_ms": [200.0, 300.0],
        "outside_ms": [25.0, 35.0],
        "phases": {name: 10.0 * (n + 1) for n, name in enumerate(phases)},
        "cpu_ms": {
            "worker": {"python": 90.0, "tokio-rt-worker": 20.0, "total": 110.0},
            "api": {"total": 4.0},
            "temporal": {"total": 120.0},
        },
    }


def test_profile_saga_breakdown_from_saved_profiles(tmp_path: Path) -> None:
    for name, lines in PROFILE_LINES.items():
        (tmp_path / f"{name}.txt").write_text("\n".join(lines) + "\n")
    # One at a time, the timed worker found 60 ms a saga in the threads; the profile 30.
    serial = _phase(1, 4, passage={profile.ACT_THREAD: 60.0}, start_ms=[7.0, 9.0, 8.0])
    loaded = _phase(10, 10)
    loaded["cpu_ms"]["worker-subscribers"] = {"total": 15.0}  # type: ignore[index]
    saved = {"rate": 100, "phases": [loaded, serial]}
    (tmp_path / "phases.json").write_text(json.dumps(saved))

    phases, rate, profiles = profile.load_saved(tmp_path)
    assert [p.concurrency for p in phases] == [10, 1]
    threads = {sample.thread for sample in profiles["worker-gil"]}
    assert threads == {"MainThread", "p-1-payment_3", "asyncio_0", "tid 301"}

    # 100 samples a second over 10 sagas: a sample is a millisecond per saga.
    gil = profile.per_saga_ms(profiles["worker-gil"], profile.worker_part, rate, 10)
    assert gil == {
        profile.WF_NEW: 30,
        profile.WF_CODEC: 10,
        profile.DB_QUERY: 15,
        profile.DB_OPEN: 5,
        profile.SUBSCRIBERS: 8,
        profile.CALLBACKS: 4,
    }
    api = profile.per_saga_ms(profiles["api-gil"], profile.api_part, rate, 10)
    assert api == {profile.API_START: 6, profile.API_VALIDATE: 4}

    rows = {row[0]: row[1:] for row in profile.breakdown(phases, rate, profiles)}
    # CPU under load, then wall one at a time and under load; blank where not measured.
    assert rows[profile.WF_NEW] == ["30.0", "", ""]
    assert rows[profile.API_START] == ["6.0", "", ""]
    assert rows["API: POST /orders, whole request (client)"] == ["", "30.0", "30.0"]
    assert rows["API: its start_workflow call alone (from a client)"] == ["", "8.0", ""]
    # The BEGIN's wall: 40 samples over 10 sagas under load, none one at a time.
    assert rows[profile.DB_OPEN] == ["5.0", "0.0", "40.0"]
    # 12 samples over the 4 serial sagas (30 ms each), scaled to the timed 60 ms; their GIL
    # was released (no CPU sample).
    assert rows[profile.DB_SQLITE] == ["0.0", "60.0", "0.0"]
    assert rows[profile.ACT_THREAD] == ["", "60.0", ""]
    assert rows["worker: Python holding the GIL (the parts above)"][0] == "72.0"
    assert rows["worker: SDK core threads (Rust; /proc)"][0] == "20.0"
    assert rows[profile.READ_SIDE] == ["15.0", "", ""]  # its own process, measured apart
    assert rows["workflow tasks running (history)"] == ["", "20.0", "20.0"]
    assert rows["outside the history (before the start; result delivery)"][1:] == ["30.0"] * 2
    assert profile.WF_NEW in profile.report(phases, rate, profiles)


def _event(event_id: int, kind: EventType.ValueType, at_ms: int, **attributes: Any) -> HistoryEvent:
    event = HistoryEvent(event_id=event_id, event_type=kind, **attributes)
    event.event_time.FromMilliseconds(at_ms)
    return event


def test_profile_saga_times_each_activity_between_its_history_and_the_timed_worker() -> None:
    events = [
        _event(
            5,
            EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
            1_000,
            activity_task_scheduled_event_attributes={"activity_id": "1"},
        ),
        _event(
            6,
            EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED,
            1_004,
            activity_task_started_event_attributes={"scheduled_event_id": 5, "attempt": 1},
        ),
        _event(
            7,
            EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
            1_030,
            activity_task_completed_event_attributes={
                "scheduled_event_id": 5,
                "started_event_id": 6,
            },
        ),
    ]
    spans = {"order-1": profile.activity_spans(events)}
    assert spans["order-1"] == {("1", 1): (1_004.0, 1_030.0)}
    marks = {"entered": 1_010.0, "thread_start": 1_011.0, "thread_end": 1_021.0, "left": 1_022.0}
    records = [
        {"workflow_id": "order-1", "activity_id": "1", "attempt": 1, **marks},
        {"workflow_id": "order-1", "activity_id": "1", "attempt": 2, **marks},  # not in history
        {"workflow_id": "order-2", "activity_id": "1", "attempt": 1, **marks},  # nor this one
    ]
    assert profile.passage(spans, records) == {
        profile.ACT_DELIVERY: 6.0,
        profile.ACT_QUEUE: 1.0,
        profile.ACT_THREAD: 10.0,
        profile.ACT_BACK: 1.0,
        profile.ACT_DONE: 8.0,
    }


def test_the_timed_worker_marks_a_sync_activity_in_its_thread() -> None:
    marks: dict[str, float] = {}
    assert _marking(lambda x: x + 1, marks)(1) == 2
    assert marks["thread_start"] <= marks["thread_end"]


def test_profile_saga_prints_its_table_from_a_kept_run(tmp_path: Path) -> None:
    test_profile_saga_breakdown_from_saved_profiles(tmp_path)
    printed = subprocess.run(
        [sys.executable, "-m", "bench.profile_saga", "--parse", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert printed.returncode == 0, printed.stderr
    assert "loaded: 10 sagas in 10 s (1.0/s) at concurrency 10" in printed.stdout
    assert "end to end (client: POST -> result)" in printed.stdout
