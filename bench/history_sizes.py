"""How big one saga's Temporal history is, per scenario, from the recorded histories.

What a step costs on a workflow engine is counted in history events (Temporal's limits: 51,200
events or 50 MB per execution) or in state transitions (Step Functions: 25,000 events per
execution, billed per transition): docs/aws.md compares the two with these figures. Reads the
newest release's folder under tests/histories/ (the histories CI replays) and counts, for each
scenario, its events, the activity tasks the saga scheduled (one per step, compensation and
event-store batch), its workflow tasks and timers, and the file's size.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.results import RESULTS, add_results_option, include, publish

HISTORIES = Path(__file__).parents[1] / "tests" / "histories"
AWS_DOC = Path(__file__).parents[1] / "docs" / "aws.md"
EVENT_LIMIT = 51_200
"""Temporal's hard limit on one execution's history (docs.temporal.io: Workflow Execution
limits)."""


@dataclass(frozen=True)
class Size:
    scenario: str
    events: int
    activities: int
    workflow_tasks: int
    timers: int
    json_bytes: int


def newest_release(root: Path = HISTORIES) -> Path:
    """``order-saga-<major>.<minor>`` with the highest version."""

    def version(folder: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", folder.name))

    releases = [f for f in root.glob("order-saga-*") if f.is_dir()]
    if not releases:
        raise SystemExit(f"no order-saga-* folder under {root}")
    return max(releases, key=version)


def measure(path: Path) -> Size:
    events = json.loads(path.read_text())["events"]
    kinds = Counter(event["eventType"].removeprefix("EVENT_TYPE_") for event in events)
    return Size(
        scenario=path.stem,
        events=len(events),
        activities=kinds["ACTIVITY_TASK_SCHEDULED"],
        workflow_tasks=kinds["WORKFLOW_TASK_COMPLETED"],
        timers=kinds["TIMER_STARTED"],
        json_bytes=path.stat().st_size,
    )


def report(folder: Path, sizes: list[Size]) -> str:
    header = ("scenario", "events", "activity tasks", "workflow tasks", "timers", "JSON bytes")
    rows = [
        (s.scenario, s.events, s.activities, s.workflow_tasks, s.timers, s.json_bytes)
        for s in sizes
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [f"{folder.name}: one execution's history per scenario"]
    lines.append("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    largest = max(sizes, key=lambda s: s.events)
    lines.append(
        f"largest: {largest.scenario}, {largest.events} events, "
        f"{largest.events / EVENT_LIMIT:.2%} of Temporal's {EVENT_LIMIT:,}-event limit"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--histories", type=Path, default=None, help="a folder of histories")
    add_results_option(parser)
    args = parser.parse_args()
    folder = args.histories or newest_release()
    sizes = [measure(path) for path in sorted(folder.glob("*.json"))]
    if not sizes:
        raise SystemExit(f"no histories in {folder}")
    text = report(folder, sizes)
    print(text)
    path = publish("history_sizes", text, args.results)
    if args.results.resolve() == RESULTS.resolve():  # docs/aws.md shows the figures
        include(AWS_DOC, "results/history_sizes.md", path.read_text())
    print(f"written: {path}")


if __name__ == "__main__":
    main()
