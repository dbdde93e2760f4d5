"""Where a saga's time goes, profiled: CPU and wall per part of one order, end to end.

    make bench-profile                       # 30 s at concurrency 10, then 30 orders one at a time
    make bench-profile BENCH_ARGS="--seconds 15 --keep bench/results/profile"

Starts a stack like ``make up``'s (file-backed dev server with the same flags, the worker, ``python
-m api``) in a temporary directory and warms it up. The worker is ``python -m worker`` with an
interceptor that marks each activity's way through it (bench/timed_worker.py). Each order is a
``POST /orders``, then a wait for the saga's result through the Temporal client (a long-poll:
no ``GET`` polling adds queries to the worker's profile). Two phases:

1. loaded: ``--concurrency`` orders in flight for ``--seconds``. py-spy records the worker and
   the API with ``--gil`` (only the thread holding the GIL: where the Python CPU goes, one
   thread at a time) and the worker with ``--idle`` (every thread: the activity threads' wall
   time); ``/proc`` gives each process's CPU, the worker's by thread (the SDK's Rust core runs
   threads of its own, which py-spy cannot see into);
2. serial: ``--serial`` orders one at a time, the worker recorded with ``--idle`` again: each
   part's own wall time, without queueing behind other orders.

The histories of each phase's sagas give the server's view (``bench/where_time_goes.py``'s
split); between each activity's started and completed events, the worker's marks split the rest:
delivery to the worker's Python, the wait for a thread, the body, the way back, the completion.
The table shows, per saga, each part's CPU under load and its wall time in both phases. py-spy
runs ``--nonblocking`` (the processes never stop), which loses more samples of busy threads than
of idle ones: the activity threads' profile gives the body's shares, the marks its total. py-spy
must be able to attach (ptrace; ``make bench-install`` installs it). ``--keep DIR`` saves the
raw profiles and the timings; ``--parse DIR`` prints the table again from them.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.common import (
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from api.sagas import REQUEST_HASH
from bench.drivers import order
from bench.stats import table
from bench.where_time_goes import split
from cloudmart.contracts.saga import start_search_attributes, workflow_id
from cloudmart.devstack import DevStack, settings_env, throwaway_settings
from cloudmart.process import exit_now
from cloudmart.settings import Settings
from cloudmart.temporal import connect
from workflows.order_saga import OrderSaga

HISTORIES = 40
"""Histories fetched and split (the last sagas of the window)."""
WARM_UP_S = 8.0
"""Sagas run before recording: imports, caches, the server's first tables."""

# --- py-spy's raw output and what each sample is part of -------------------------------------


@dataclass(frozen=True)
class Sample:
    thread: str
    """The Python thread's name (``MainThread``, ``temporal_workflow_3``...), or ``tid 123``
    for a thread Python did not start (the SDK's Rust core calling into Python)."""
    frames: tuple[str, ...]
    """Outermost first, each ``function (file:line)``."""
    count: int


_THREAD = re.compile(r"^thread \((?:0x)?[0-9a-fA-F]+\)(?:: (?P<name>.*))?$")


def parse_raw(text: str) -> list[Sample]:
    """py-spy's ``--format raw --threads`` output: one stack per line, ``;``-separated, the
    thread first, the count last."""
    samples = []
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        head, *frames = stack.split(";")
        match = _THREAD.match(head)
        if match is None:  # recorded without --threads: no thread to tell apart
            head, frames = "?", [head, *frames]
        else:
            head = match["name"] or head.replace("thread (", "tid ").rstrip(")")
        samples.append(Sample(head, tuple(frames), int(count)))
    return samples


ACTIVITY_THREAD = re.compile(r"-(orders|inventory|payment|shipping)_\d+$")
"""worker.py names each service's activity pool after its task queue, ``<prefix>-<service>``."""

# The parts, in the order the table shows them.
WF_NEW = "workflow task: new sandbox per saga (re-imports workflows/)"
WF_CONTEXT = "workflow task: SDK serialization context (sandbox exec per payload)"
WF_CONVERT = "workflow task: payload conversion (pydantic JSON)"
WF_CODEC = "workflow task: payload codec (AES-GCM)"
WF_OURS = "workflow task: our workflow code (workflows/)"
WF_SDK = "workflow task: SDK activation, sandbox, commands"
DISPATCH = "activity dispatch + completion: SDK (decode, hand-off, complete)"
DISPATCH_CODEC = "activity dispatch + completion: payload codec + conversion"
DB_OPEN = "activity body: database, session open + BEGIN IMMEDIATE"
DB_QUERY = "activity body: database, queries (SQLAlchemy)"
DB_SQLITE = "activity body: database, in SQLite (statements)"
DB_COMMIT = "activity body: database, commit + close"
ACT_PYDANTIC = "activity body: pydantic (contracts)"
ACT_OURS = "activity body: our Python (services/, activities/)"
CALLBACKS = "SDK core threads in Python (wake-ups, object conversion)"
SUBSCRIBERS = "subscribers: projector + loyalty (off the saga's path)"
READ_SIDE = "read side: its own process's CPU (/proc; make up runs it apart)"
LOOP = "event loop (scheduling, polling)"
OTHER = "other"
IDLE = "idle"
WORKER_PARTS = (
    WF_NEW,
    WF_CONTEXT,
    WF_CONVERT,
    WF_CODEC,
    WF_OURS,
    WF_SDK,
    DISPATCH,
    DISPATCH_CODEC,
    DB_OPEN,
    DB_QUERY,
    DB_SQLITE,
    DB_COMMIT,
    ACT_PYDANTIC,
    ACT_OURS,
    CALLBACKS,
    SUBSCRIBERS,
    LOOP,
    OTHER,
)

API_HTTP = "API: HTTP server (uvicorn, middleware)"
API_VALIDATE = "API: request parsing + pydantic validation (FastAPI)"
API_AUTH = "API: auth (api/auth.py)"
API_OURS = "API: our route code (api/)"
API_CONVERT = "API: start_workflow, payload conversion + codec"
API_START = "API: start_workflow, SDK + RPC"
API_RESPOND = "API: response serialization"
API_LOOP = "API: event loop"
API_PARTS = (API_HTTP, API_VALIDATE, API_AUTH, API_OURS, API_CONVERT, API_START, API_RESPOND)
API_PARTS += (API_LOOP, OTHER)


def _any(frames: Iterable[str], *needles: str) -> bool:
    return any(needle in frame for frame in frames for needle in needles)


def _database(frames: tuple[str, ...]) -> str | None:
    """Which part of a database call an activity thread's stack is in, if any."""
    if not _any(frames, "sqlalchemy/", "sqlmodel/", "sqlite3"):
        return None
    leaf = frames[-1]
    if _any(frames, "_begin_immediate", "Session.__init__", "_connection_for_bind", "pool/"):
        return DB_OPEN
    closing = _any(frames, "SessionTransaction.commit", "SessionTransaction.close", "Session.close")
    if closing and not _any(frames, "Session.flush", "Session._flush"):  # a flush's are queries
        return DB_COMMIT
    if _any((leaf,), "do_execute", "do_executemany", "fetchall", "fetchone", "fetchmany"):
        return DB_SQLITE
    return DB_QUERY


def worker_part(sample: Sample) -> str:
    thread, frames = sample.thread, sample.frames
    if thread.startswith("tid "):  # with no Python frames: converting objects, in Rust
        return CALLBACKS
    if not frames:
        return OTHER
    if thread.startswith("asyncio_") and _any(frames, "Projector", "LoyaltyService"):
        return SUBSCRIBERS
    if _any(frames, "_execute_sync_activity"):
        if (part := _database(frames)) is not None:
            return part
        if _any(frames[-1:], "pydantic"):
            return ACT_PYDANTIC
        return ACT_OURS
    if "_worker (concurrent/futures/thread.py" in frames[-1]:
        return IDLE  # a pool thread waiting for work
    if _any(frames, "temporalio/worker/_activity.py"):
        if _any(frames, "cloudmart/codec.py", "temporalio/converter", "contrib/pydantic"):
            return DISPATCH_CODEC
        return DISPATCH
    if _any(frames, "_create_workflow_instance"):
        return WF_NEW
    if _any(frames, "cloudmart/codec.py"):
        return WF_CODEC
    if _any(frames, "_get_current_dc", "get_serialization_context", "get_external_store_context"):
        return WF_CONTEXT
    if _any(frames, "contrib/pydantic", "temporalio/converter", "pydantic/"):
        return WF_CONVERT
    if _any(frames, "(workflows/"):
        return WF_OURS
    if _any(frames, "temporalio/worker/_workflow", "workflow_sandbox", "temporalio/bridge"):
        return WF_SDK
    if thread == "MainThread" and _any(frames, "asyncio/"):
        return LOOP
    return OTHER


def api_part(sample: Sample) -> str:
    frames = sample.frames
    if not frames:
        return OTHER
    if _any(frames, "start_workflow"):
        if _any(frames, "cloudmart/codec.py", "temporalio/converter", "contrib/pydantic"):
            return API_CONVERT
        return API_START
    if _any(frames, "(api/auth.py"):
        return API_AUTH
    if _any(frames, "serialize_response", "jsonable_encoder"):
        return API_RESPOND
    if _any(frames, "request_body_to_args", "solve_dependencies", "pydantic", "Request.json"):
        return API_VALIDATE
    if _any(frames, "(api/routes", "(api/sagas.py"):
        return API_OURS
    if _any(frames, "uvicorn/", "h11", "httptools", "starlette/", "fastapi/", "(api/middleware"):
        return API_HTTP
    if _any(frames, "asyncio/"):
        return API_LOOP
    return OTHER


def per_saga_ms(
    samples: Iterable[Sample], part: Callable[[Sample], str], rate: int, sagas: int
) -> Counter[str]:
    """Milliseconds per saga spent in each part: samples / rate, over the sagas of the window."""
    spent: Counter[str] = Counter()
    for sample in samples:
        spent[part(sample)] += sample.count * 1000 / rate / sagas
    return spent


# --- CPU from /proc ----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> dict[str, float]:
    """The process's CPU time so far, by thread name (the kernel's: Rust names its threads,
    Python 3.11 does not), and in all under ``"total"``."""
    ticks = os.sysconf("SC_CLK_TCK")
    threads: Counter[str] = Counter()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        threads[re.sub(r"[-_ ]?\d+$", "", comm)] += (int(fields[11]) + int(fields[12])) / ticks
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return {**threads, "total": (int(fields[11]) + int(fields[12])) / ticks}


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before.get(key, 0.0) for key in after}


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Phase:
    """One load at one concurrency, and what was measured while the profilers recorded it."""

    concurrency: int
    seconds: float
    sagas: int
    post_ms: list[float]
    """Each ``POST /orders``, as the client saw it."""
    end_to_end_ms: list[float]
    """Each order from its POST to the saga's result."""
    outside_ms: list[float]
    """Each order's end to end minus its history's span (first event to last): the POST's
    part before the start, and the result's delivery."""
    phases: dict[str, float]
    """Median per saga of each history phase (bench/where_time_goes.py's split)."""
    cpu_ms: dict[str, dict[str, float]]
    """Per saga: process -> thread group (or "total") -> ms of CPU."""
    passage: dict[str, float] = field(default_factory=dict)
    """Median per saga of each stretch of its activities' way through the worker (PASSAGE)."""
    start_ms: list[float] = field(default_factory=list)
    """Serial phase: ``start_workflow`` alone, from a client (the API's RPC, without the API)."""


@dataclass
class Orders:
    ids: list[str] = field(default_factory=list)
    post_ms: list[float] = field(default_factory=list)
    end_to_end_ms: list[float] = field(default_factory=list)


async def load(
    stack: TimedStack, client: Client, concurrency: int, *, seconds: float = 0, count: int = 0
) -> Orders:
    """Orders through the API, each one's result through the client: ``concurrency`` in flight
    for ``seconds``, or ``count`` of them."""
    done = Orders()
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:

        async def one(n: int) -> None:
            started = time.perf_counter()
            response = await http.post("/orders", json=order(n).model_dump())
            response.raise_for_status()
            posted = time.perf_counter()
            order_id = response.json()["order_id"]
            await client.get_workflow_handle(workflow_id(order_id)).result()
            done.end_to_end_ms.append((time.perf_counter() - started) * 1000)
            done.post_ms.append((posted - started) * 1000)
            done.ids.append(order_id)

        async def in_flight(n: int) -> None:
            while (time.monotonic() < deadline) if seconds else (n < count):
                await one(n)
                n += concurrency

        await asyncio.gather(*(in_flight(k) for k in range(concurrency)))
    return done


Spans = dict[str, dict[tuple[str, int], tuple[float, float]]]
"""workflow id -> (activity id, attempt) -> the history's (started, completed), ms."""


async def histories(client: Client, done: Orders) -> tuple[dict[str, float], list[float], Spans]:
    """The median of each history phase, each order's time outside its history, and the
    spans of its activities (of the last ``HISTORIES`` orders)."""
    splits, outside, spans = [], [], {}
    for order_id, end_to_end in list(zip(done.ids, done.end_to_end_ms, strict=True))[-HISTORIES:]:
        history = await client.get_workflow_handle(workflow_id(order_id)).fetch_history()
        splits.append(split(list(history.events)))
        outside.append(end_to_end - splits[-1]["total"])
        spans[workflow_id(order_id)] = activity_spans(list(history.events))
    medians = {key: statistics.median(s.get(key, 0.0) for s in splits) for key in splits[0]}
    return medians, outside, spans


def activity_spans(events: list[HistoryEvent]) -> dict[tuple[str, int], tuple[float, float]]:
    """Each completed activity's (started, completed) times, by (activity id, attempt)."""
    scheduled: dict[int, str] = {}
    started: dict[int, tuple[str, int, float]] = {}
    spans = {}
    for event in events:
        at = event.event_time.ToMicroseconds() / 1000
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = event.activity_task_scheduled_event_attributes.activity_id
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attributes = event.activity_task_started_event_attributes
            activity_id = scheduled[attributes.scheduled_event_id]
            started[event.event_id] = (activity_id, attributes.attempt, at)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            activity_id, attempt, began = started[
                event.activity_task_completed_event_attributes.started_event_id
            ]
            spans[activity_id, attempt] = (began, at)
    return spans


ACT_DELIVERY = "activity: started -> the worker's Python has it (delivery, decode)"
ACT_QUEUE = "activity: waiting for a thread of its service's pool"
ACT_THREAD = "activity: in the thread (the body; split below)"
ACT_BACK = "activity: thread -> back on the event loop"
ACT_DONE = "activity: completion (encode, report, the server records it)"
PASSAGE = (ACT_DELIVERY, ACT_QUEUE, ACT_THREAD, ACT_BACK, ACT_DONE)


def passage(spans: Spans, records: Iterable[dict[str, Any]]) -> dict[str, float]:
    """The median per saga of each stretch of its activities' passage (summed over them): the
    histories' started and completed times around the timed worker's marks."""
    per_saga: dict[str, Counter[str]] = {}
    for record in records:
        span = spans.get(record["workflow_id"], {}).get((record["activity_id"], record["attempt"]))
        if span is None or "thread_start" not in record:
            continue
        started, completed = span
        stretches = per_saga.setdefault(record["workflow_id"], Counter())
        stretches[ACT_DELIVERY] += record["entered"] - started
        stretches[ACT_QUEUE] += record["thread_start"] - record["entered"]
        stretches[ACT_THREAD] += record["thread_end"] - record["thread_start"]
        stretches[ACT_BACK] += record["left"] - record["thread_end"]
        stretches[ACT_DONE] += completed - record["left"]
    if not per_saga:
        return {}
    return {part: statistics.median(s[part] for s in per_saga.values()) for part in PASSAGE}


def timed_activities(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def start_alone(client: Client, settings: Settings, count: int) -> list[float]:
    """The API's ``start_workflow`` call (api/sagas.py's options), timed from a client, one saga
    at a time (each awaited to its end)."""
    took = []
    for n in range(count):
        placed = order(n)
        saga = settings.saga_input(str(uuid.uuid4()), placed)
        started = time.perf_counter()
        handle = await client.start_workflow(
            OrderSaga.run,
            saga,
            id=workflow_id(saga.order_id),
            task_queue=saga.task_queues.orders,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=start_search_attributes(placed.customer_id),
            memo={REQUEST_HASH: hashlib.sha256(placed.model_dump_json().encode()).hexdigest()},
            static_summary=f"{placed.customer_id}: {len(placed.items)} line(s)",
        )
        took.append((time.perf_counter() - started) * 1000)
        await handle.result()
    return took


def py_spy() -> str:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if found is None:
        raise SystemExit("profile_saga: py-spy is not installed (make bench-install installs it)")
    return found


PROFILES = {
    # name: (process, py-spy mode, the phase's concurrency is 1)
    "worker-gil": ("worker", "gil", False),
    "api-gil": ("api", "gil", False),
    "worker-idle": ("worker", "idle", False),
    "worker-idle-c1": ("worker", "idle", True),
}


class Recorders:
    """py-spy on some of the stack's processes until stopped (SIGINT makes it write its file)."""

    def __init__(self, pids: dict[str, int], names: list[str], rate: int, out: Path) -> None:
        self.out = out
        self.spies: dict[str, subprocess.Popen[bytes]] = {}
        for name in names:
            process, mode, _ = PROFILES[name]
            command = [py_spy(), "record", "--pid", str(pids[process]), "--format", "raw"]
            command += ["--threads", "--nonblocking", f"--{mode}", "--rate", str(rate)]
            command += ["--output", str(out / f"{name}.txt")]
            self.spies[name] = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )

    async def stop(self) -> None:
        for spy in self.spies.values():
            spy.send_signal(signal.SIGINT)
        for name, spy in self.spies.items():
            _, errors = await asyncio.to_thread(spy.communicate)
            if not (self.out / f"{name}.txt").exists():
                raise SystemExit(
                    f"profile_saga: py-spy recorded no {name} profile (is ptrace allowed here? "
                    f"a container needs --cap-add SYS_PTRACE): {errors.decode().strip()[-500:]}"
                )


@dataclass
class TimedStack(DevStack):
    """``make up``'s stack, with bench/timed_worker.py as its saga worker: ``python -m worker
    --service saga`` whose interceptor marks each activity's way through it in ``timings``."""

    timings: Path = Path("activities.jsonl")

    def start_process(self, name: str) -> None:
        if name != "worker":
            super().start_process(name)
            return
        command = ["-m", "bench.timed_worker", "--timings", str(self.timings)]
        self._python(name, command, "worker ready").wait_ready(60)


async def measure(
    stack: TimedStack, seconds: float, concurrency: int, serial: int, rate: int, out: Path
) -> list[Phase]:
    """The loaded phase (``concurrency`` for ``seconds``: CPU, and wall under load), then the
    serial one (``serial`` orders one at a time: each part's own wall, without queueing)."""
    client = await connect(stack.settings)
    await load(stack, client, concurrency, seconds=WARM_UP_S)
    measured = ("worker", "worker-subscribers", "api", "temporal")
    pids = {name: stack.processes[name].popen.pid for name in measured}
    found = []
    for serial_phase in (False, True):
        names = [name for name, (_, _, c1) in PROFILES.items() if c1 == serial_phase]
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        recorders = Recorders(pids, names, rate, out)
        started = time.monotonic()
        if serial_phase:
            done = await load(stack, client, 1, count=serial)
        else:
            done = await load(stack, client, concurrency, seconds=seconds)
        elapsed = time.monotonic() - started
        await recorders.stop()
        cpu = {
            name: {
                key: ms * 1000 / len(done.ids)
                for key, ms in cpu_delta(before[name], cpu_seconds(pid)).items()
            }
            for name, pid in pids.items()
        }
        phases, outside, spans = await histories(client, done)
        found.append(
            Phase(
                1 if serial_phase else concurrency,
                elapsed,
                len(done.ids),
                done.post_ms,
                done.end_to_end_ms,
                outside,
                phases,
                cpu,
                passage(spans, timed_activities(stack.timings)),
            )
        )
    found[-1].start_ms = await start_alone(client, stack.settings, serial)
    return found


# --- the report -------------------------------------------------------------------------------


def save(phases: list[Phase], rate: int, out: Path) -> None:
    saved = {"rate": rate, "phases": [phase.__dict__ for phase in phases]}
    (out / "phases.json").write_text(json.dumps(saved, indent=1))


def load_saved(out: Path) -> tuple[list[Phase], int, dict[str, list[Sample]]]:
    saved = json.loads((out / "phases.json").read_text())
    profiles = {name: parse_raw((out / f"{name}.txt").read_text()) for name in PROFILES}
    return [Phase(**phase) for phase in saved["phases"]], saved["rate"], profiles


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"  # blank: not measured


def breakdown(phases: list[Phase], rate: int, profiles: dict[str, list[Sample]]) -> list[list[str]]:
    """The table's rows: per saga, each part's CPU (Python holding the GIL, unless it says
    /proc) under load, and its wall time one at a time and under load."""
    loaded, serial = phases
    gil = per_saga_ms(profiles["worker-gil"], worker_part, rate, loaded.sagas)
    api = per_saga_ms(profiles["api-gil"], api_part, rate, loaded.sagas)

    body = [part for part in WORKER_PARTS if part.startswith("activity body")]

    def activity_wall(name: str, phase: Phase) -> Counter[str]:
        threads = (s for s in profiles[name] if ACTIVITY_THREAD.search(s.thread))
        spent = per_saga_ms(threads, worker_part, rate, phase.sagas)
        # Sampling without stopping the process loses more samples of busy threads than of
        # idle ones: the profile gives the shares, the timed worker the total.
        profiled, timed = sum(spent[part] for part in body), phase.passage.get(ACT_THREAD)
        if profiled and timed:
            spent = Counter({part: ms * timed / profiled for part, ms in spent.items()})
        return spent

    walls = (activity_wall("worker-idle-c1", serial), activity_wall("worker-idle", loaded))
    rows: list[list[str]] = []

    def row(
        part: str, cpu: float | None, wall: tuple[float | None, float | None] = (None, None)
    ) -> None:
        rows.append([part, _ms(cpu), _ms(wall[0]), _ms(wall[1])])

    def history(phase: str) -> tuple[float, float]:
        return serial.phases[phase], loaded.phases[phase]

    def median(values: Callable[[Phase], list[float]]) -> tuple[float, float]:
        return statistics.median(values(serial)), statistics.median(values(loaded))

    row("API: POST /orders, whole request (client)", None, median(lambda p: p.post_ms))
    alone = statistics.median(serial.start_ms) if serial.start_ms else None
    row("API: its start_workflow call alone (from a client)", None, (alone, None))
    for part in API_PARTS:
        row(part, api.get(part, 0.0))
    row("API: process CPU (/proc; with the SDK's Rust core)", loaded.cpu_ms["api"]["total"])
    row("Temporal server: process CPU (/proc)", loaded.cpu_ms["temporal"]["total"])
    row("server: workflow tasks waiting to start (history)", None, history("WFT wait"))
    row("workflow tasks running (history)", None, history("WFT run"))
    for part in WORKER_PARTS[:6]:
        row(part, gil.get(part, 0.0))
    row("server: activities waiting to start (history)", None, history("activity wait"))
    for part in (DISPATCH, DISPATCH_CODEC):
        row(part, gil.get(part, 0.0))
    row("activity bodies running (history)", None, history("activity run"))
    for part in PASSAGE:
        row(part, None, (serial.passage.get(part), loaded.passage.get(part)))
    for part in body:
        row(part, gil.get(part, 0.0), (walls[0].get(part, 0.0), walls[1].get(part, 0.0)))
    row(
        "activity body: all, in the activity threads",
        sum(gil.get(part, 0.0) for part in body),
        (sum(walls[0][p] for p in body), sum(walls[1][p] for p in body)),
    )
    for part in (CALLBACKS, SUBSCRIBERS, LOOP, OTHER):
        row(part, gil.get(part, 0.0))
    read_side = loaded.cpu_ms.get("worker-subscribers")  # profiles saved before it had a process
    row(READ_SIDE, read_side["total"] if read_side else None)
    worker = loaded.cpu_ms["worker"]
    row("worker: Python holding the GIL (the parts above)", sum(gil.values()) - gil[IDLE])
    row("worker: SDK core threads (Rust; /proc)", sum(v for k, v in worker.items() if "tokio" in k))
    row("worker: process CPU (/proc)", worker["total"])
    row("outside the history (before the start; result delivery)", None, median(_outside))
    row("end to end (client: POST -> result)", None, median(lambda p: p.end_to_end_ms))
    return rows


def report(phases: list[Phase], rate: int, profiles: dict[str, list[Sample]]) -> str:
    loaded, serial = phases
    head = (
        f"loaded: {loaded.sagas} sagas in {loaded.seconds:.0f} s "
        f"({loaded.sagas / loaded.seconds:.1f}/s) at concurrency {loaded.concurrency}; serial: "
        f"{serial.sagas} one at a time. Per saga. CPU: ms of Python holding the GIL (py-spy "
        f"--gil at {rate} Hz, loaded), or of a process (/proc). Wall: medians of the histories' "
        "phases (each a sum over the saga's tasks), of the client's timings, of the timed "
        "worker's marks around each activity, and the body split as the activity threads' wall "
        "profile (py-spy --idle) shares it."
    )
    headers = ["per saga", "CPU ms", "wall ms, C=1", f"wall ms, C={loaded.concurrency}"]
    return head + "\n" + table(breakdown(phases, rate, profiles), headers)


def _outside(phase: Phase) -> list[float]:
    return phase.outside_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="of the loaded phase")
    parser.add_argument("--concurrency", type=int, default=10, help="of the loaded phase")
    parser.add_argument("--serial", type=int, default=30, help="orders one at a time after it")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--keep", type=Path, help="save the raw profiles and timings here")
    parser.add_argument("--parse", type=Path, help="only print the table from a --keep dir")
    args = parser.parse_args()
    if args.parse:
        print(report(*load_saved(args.parse)))
        return
    py_spy()
    with tempfile.TemporaryDirectory(prefix="cloudmart-profile-") as data:
        out = args.keep or Path(data) / "profiles"
        out.mkdir(parents=True, exist_ok=True)
        settings = throwaway_settings(Path(data), task_queue_prefix=f"p-{uuid.uuid4().hex[:6]}")
        timings = out / "activities.jsonl"
        stack = TimedStack(settings, settings_env(settings), output=None, timings=timings)
        try:
            stack.start()
            sizes = (args.seconds, args.concurrency, args.serial, args.rate)
            phases = asyncio.run(measure(stack, *sizes, out))
        finally:
            stack.stop()
        save(phases, args.rate, out)
        print(report(*load_saved(out)))


if __name__ == "__main__":
    main()
    exit_now(0)
