"""bench/history_sizes.py counts what it says, on histories written here, and reads the
recorded ones CI replays."""

from __future__ import annotations

import json
from pathlib import Path

from bench.history_sizes import HISTORIES, measure, newest_release, report


def history(path: Path, kinds: list[str]) -> Path:
    events = [{"eventId": str(n), "eventType": f"EVENT_TYPE_{k}"} for n, k in enumerate(kinds, 1)]
    path.write_text(json.dumps({"events": events}))
    return path


def test_each_kind_is_counted(tmp_path: Path) -> None:
    kinds = [
        "WORKFLOW_EXECUTION_STARTED",
        "WORKFLOW_TASK_COMPLETED",
        "ACTIVITY_TASK_SCHEDULED",
        "ACTIVITY_TASK_SCHEDULED",
        "TIMER_STARTED",
        "WORKFLOW_TASK_COMPLETED",
        "WORKFLOW_EXECUTION_COMPLETED",
    ]
    path = history(tmp_path / "completed.json", kinds)
    size = measure(path)
    assert (size.scenario, size.events, size.activities) == ("completed", 7, 2)
    assert (size.workflow_tasks, size.timers, size.json_bytes) == (2, 1, path.stat().st_size)
    text = report(tmp_path, [size])
    assert "completed" in text.splitlines()[3]
    assert "largest: completed, 7 events, 0.01% of Temporal's 51,200-event limit" in text


def test_the_newest_release_is_chosen_by_version_not_by_name(tmp_path: Path) -> None:
    for name in ("order-saga-1.9", "order-saga-1.10", "before-fraud-screen"):
        (tmp_path / name).mkdir()
    assert newest_release(tmp_path).name == "order-saga-1.10"


def test_the_recorded_histories_are_measured() -> None:
    folder = newest_release(HISTORIES)
    sizes = [measure(path) for path in sorted(folder.glob("*.json"))]
    completed = next(s for s in sizes if s.scenario == "completed")
    assert completed.activities >= 5  # a step each, and the events' batches
    assert all(s.events > s.activities > 0 for s in sizes)
