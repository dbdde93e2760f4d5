"""bench/saga_versions.py: its older worker is today's code with the newest patch refused, and
its table has every row it measured. The measuring is the benchmark's (make bench-versions)."""

from __future__ import annotations

import pytest
from temporalio import workflow

from bench import older_saga_worker
from bench.saga_versions import NEWEST, PREVIOUS, REFUSED, report
from bench.stats import Run
from workflows.order_saga import SAGA_V7, SAGA_V8


def test_the_older_worker_refuses_only_the_newest_patch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workflow, "patched", lambda patch: True)  # as a new saga would take it
    older_saga_worker.refuse(frozenset(REFUSED))
    assert REFUSED == (SAGA_V8,)
    assert workflow.patched(SAGA_V8) is False
    assert workflow.patched(SAGA_V7) is True  # the previous version's own patch: taken


def test_the_report_has_both_versions_in_both_modes_with_their_history_length() -> None:
    runs = [
        Run(f"{version} {mode}", concurrency, [10.0, 20.0, 30.0], 0.5)
        for version in (NEWEST, PREVIOUS)
        for mode in ("regular", "local")
        for concurrency in (1, 10)
    ]
    events = {f"{NEWEST} regular": 44, f"{PREVIOUS} regular": 45}
    text = report(runs, events)
    lines = text.splitlines()
    assert len(lines) == 2 + 2 + len(runs)  # the caption, the headers, a row per run
    assert any(line.split()[:3] == ["v8", "regular", "1"] and line.endswith("44") for line in lines)
    assert any(line.split()[:3] == ["v7", "local", "10"] for line in lines)
    assert "saga-v8 refused" in text
