"""make bench's report: every row in its table, each goal judged from its own figure, the plot
written. Synthetic runs: the measuring is the benchmark's; what it says of them is tested here."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from bench.drivers import One, drive_alternating
from bench.saga_vs_floor import (
    API,
    CLIENT,
    CLIENT_UNSANDBOXED,
    CONCURRENCIES,
    DBOS,
    FLOOR,
    FLOOR_HOPS,
    LOCAL,
    LOCAL_FLOOR,
    LOCAL_UNSANDBOXED,
    Results,
    goals,
    plot,
    report,
)
from bench.stats import Run

P50 = {
    FLOOR: 100.0,
    FLOOR_HOPS: 105.0,
    LOCAL_FLOOR: 30.0,
    CLIENT: 110.0,
    API: 113.0,
    LOCAL: 50.0,
    DBOS: 20.0,
}
"""ms at every concurrency: the saga within 1.15x of the floor, the API 3 ms over the client,
local steps 2.5x DBOS's latency; the hops 1.05x the floor, the local floor 1.5x DBOS's."""
UNSANDBOXED_P50 = {
    FLOOR: 100.0,
    LOCAL_FLOOR: 32.0,
    CLIENT_UNSANDBOXED: 120.0,
    LOCAL_UNSANDBOXED: 38.0,
    DBOS: 20.0,
}
"""The sandbox off: the saga 1.2x the floor; local steps 1.9x DBOS's latency."""


def run(name: str, concurrency: int, p50: float, per_second: float) -> Run:
    latencies = [p50] * 10
    return Run(name, concurrency, latencies, elapsed_s=len(latencies) / per_second)


def results() -> Results:
    return Results(
        runs=[
            run(name, c, p50, per_second=1000 / p50 * c)
            for c in CONCURRENCIES
            for name, p50 in P50.items()
        ],
        unsandboxed=[
            run(name, c, p50, per_second=1000 / p50 * c)
            for c in CONCURRENCIES
            for name, p50 in UNSANDBOXED_P50.items()
        ],
        databases=[run("SQLite: saga via client", 1, 110, 9), run("PostgreSQL", 1, 130, 7)],
        workers=[run(f"{n} worker processes", 50, 900 / n, 10 * n) for n in (1, 2, 4)],
        history_events=50,
        history_kb=12.5,
        rows_per_order={"orders": 7.0, "temporal KB": 30.5},
    )


def test_each_goal_is_judged_from_its_figure() -> None:
    judged = {goal.goal: (goal.figure, goal.met) for goal in goals(results())}
    assert judged["saga via client p50 <= 1.15x floor at C=10"] == ("1.10x", True)
    assert judged["saga via API p50 <= 1.15x floor at C=50"] == ("1.13x", True)
    assert judged["API overhead per order at p50 <= 5 ms (C=1)"] == ("+3.0 ms", True)
    assert judged["local steps p50 <= 2x DBOS at C=1"] == ("2.50x", False)
    assert judged["local steps per s >= 0.5x DBOS at C=10"] == ("0.40x", False)
    assert judged["saga via client per s >= 0.9x floor at C=1"] == ("0.91x", True)
    # The sandbox off: judged against the floor and DBOS measured beside it.
    assert judged["saga via client, no sandbox p50 <= 1.15x floor at C=1"] == ("1.20x", False)
    assert judged["saga via client, no sandbox per s >= 0.9x floor at C=10"] == ("0.83x", False)
    assert judged["local steps, no sandbox p50 <= 2x DBOS at C=50"] == ("1.90x", True)
    assert judged["local steps, no sandbox per s >= 0.5x DBOS at C=1"] == ("0.53x", True)
    assert len(judged) == 3 * len(CONCURRENCIES) + 1 + 2 * len(CONCURRENCIES) + 4 * len(
        CONCURRENCIES
    )


def test_the_report_has_every_row_and_section() -> None:
    text = report(results())
    for name in P50:
        for c in CONCURRENCIES:
            assert re.search(rf"^\s*{re.escape(name)}\s+{c}\s", text, re.M), (name, c)
    assert "PostgreSQL" in text and "4 worker processes" in text
    assert "C=1: +3.0 ms" in text  # the API's overhead
    assert "50 history events (12.5 KB)" in text and "temporal KB 30.5" in text
    for name in (CLIENT_UNSANDBOXED, LOCAL_UNSANDBOXED):
        for c in CONCURRENCIES:
            assert re.search(rf"^\s*{re.escape(name)}\s+{c}\s", text, re.M), (name, c)
    assert "CLOUDMART_WORKFLOW_SANDBOX=false" in text
    # The DBOS goals with the sandbox on, and the saga's against the floor with it off.
    assert text.count("NOT MET") == 2 * len(CONCURRENCIES) + 2 * len(CONCURRENCIES)


def test_what_temporal_itself_takes_is_each_ratio_of_its_pair_in_its_own_phase() -> None:
    text = report(results())
    section = text[text.index("What Temporal itself takes") :].splitlines()
    rows = [line.strip().rsplit(None, 3) for line in section[3:]]
    ratios = {row[0]: row[1:] for row in rows}
    assert ratios == {
        "floor, another queue / floor": ["1.05x"] * 3,
        "saga via client / floor, another queue": ["1.05x"] * 3,
        "local floor / DBOS saga": ["1.50x"] * 3,
        "saga, local steps / local floor": ["1.67x"] * 3,
        "local floor / DBOS saga (sandbox-off phase)": ["1.60x"] * 3,
        "local steps, no sandbox / local floor (sandbox-off phase)": ["1.19x"] * 3,
    }


def test_without_the_extra_floors_the_report_leaves_their_section_out() -> None:
    partial = results()
    partial.runs = [r for r in partial.runs if r.name not in (FLOOR_HOPS, LOCAL_FLOOR)]
    partial.unsandboxed = [r for r in partial.unsandboxed if r.name != LOCAL_FLOOR]
    assert "What Temporal itself takes" not in report(partial)


def test_the_plot_is_a_png(tmp_path: Path) -> None:
    path = tmp_path / "plots" / "bench.png"
    plot(results(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000


async def test_at_concurrency_1_the_rows_take_turns_order_by_order() -> None:
    """So that a slow spell of the machine reaches every row alike."""
    calls: list[tuple[str, int]] = []

    def subject(name: str, seconds: float) -> One:
        async def one(n: int) -> None:
            calls.append((name, n))
            await asyncio.sleep(seconds)

        return one

    runs = await drive_alternating({"a": subject("a", 0.01), "b": subject("b", 0.03)}, 3)
    assert calls == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    a, b = runs
    assert (a.name, a.concurrency, len(a.latencies_ms)) == ("a", 1, 3)
    assert 10 <= a.p50 < b.p50 and b.p50 >= 30
    assert a.throughput == 3 / (sum(a.latencies_ms) / 1000)
