"""A smoke test of a benchmark: ``make bench-idle``, tiny, end to end. The script runs
its stack, loads review sagas, measures each cache size, resumes sagas to COMPLETED (it exits 1
otherwise), and writes its result file as every benchmark does (bench/results.py), here to a
directory of the test's own so that the committed results stay as the last real run left them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
ORDERS, SMALL, RESUMES = 16, 4, 2


def cells(output: str, first: str) -> list[str]:
    """The row of a printed table whose first cell is ``first``, split into its cells."""
    for line in output.splitlines():
        row = re.split(r"\s{2,}", line.strip())
        if row[0] == first:
            return row
    raise AssertionError(f"no row {first!r} in:\n{output}")


def test_the_idle_saga_study_runs_end_to_end_and_writes_its_result(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            *(sys.executable, "-m", "bench.idle_sagas"),
            *("--orders", str(ORDERS), "--small-cache", str(SMALL), "--large-cache", "0"),
            *("--resumes", str(RESUMES), "--window", "10", "--batch", "5"),
            *("--results", str(tmp_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    written = (tmp_path / "idle_sagas.md").read_text()
    assert written.startswith("`python -m bench.idle_sagas --orders") and " commit " in written
    out = written
    assert f"{ORDERS} sagas waiting for a payment review, loaded in" in out

    live = cells(out, "1000 (default), live")
    default = cells(out, "1000 (default)")
    small = cells(out, str(SMALL))
    # cache, waiting, cached, RSS idle, cached, all touched, KB per saga, fill s, resumes
    assert live[1:3] == [str(ORDERS), str(ORDERS)]
    # Each row's resumed sagas completed and left the waiting ones.
    assert default[1:3] == [str(ORDERS - RESUMES)] * 2
    assert small[1:3] == [str(ORDERS - 2 * RESUMES), str(SMALL)]
    for row in (live, default, small):
        assert float(row[3]) > 50 and float(row[4]) > 50  # MB: a Python worker at least
        assert row[8] != "—" and row[8].endswith(f"(n={RESUMES})")
    assert float(default[6]) > 0  # KB per cached saga (the small cache's 3 are too few to say)
    assert float(small[5]) > 0  # every saga went through the small cache
    assert live[9] == default[9] == "—"  # the default cache holds all 30
    assert small[9].endswith(f"(n={RESUMES})")

    temporal = cells(out, "temporal")
    assert float(temporal[2]) > float(temporal[1]) > 0  # MB on disk, after > before
    assert int(temporal[5].replace(",", "")) > 0  # bytes in use per saga
    assert cells(out, "event_store")[5] != "0"  # the event store gained the sagas' events
