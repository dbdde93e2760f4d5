"""``make bench-styles``, tiny, end to end (docs/orchestration-vs-choreography.md): its own
stack, two orders to COMPLETED and two returns through the worker's consumers to
``PointsRevoked``, what each wrote and where to look counted from the databases, and the code
counted from the files. The result file goes to a directory of the test's own, so that the
committed result stays as the last real run left it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.system.test_bench_smoke import ROOT, cells

ROUNDS = 2


def test_the_saga_styles_bench_measures_both_sagas_and_writes_its_result(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            *(sys.executable, "-m", "bench.saga_styles"),
            *("--rounds", str(ROUNDS), "--warm-up", "0", "--results", str(tmp_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = (tmp_path / "saga_styles.md").read_text()
    assert out.startswith("`python -m bench.saga_styles --rounds 2") and " commit " in out

    # part, N, p50 ms, p95 ms: every part measured each round, in plausible milliseconds.
    parts = ["order saga: start → COMPLETED", "return saga: request → label"]
    parts += ["return saga: inspection → points revoked"]
    hops = ["shipping: ReturnShipmentCreated", "inventory: StockRestocked"]
    hops += ["payment: ReturnRefunded", "loyalty: PointsRevoked"]
    for name in parts + hops:
        row = cells(out, name)
        assert row[1] == str(ROUNDS), row
        assert 0 < float(row[2]) <= float(row[3]) < 30_000, row
    # The inspection's part holds three of the hops, one after the other.
    after = float(cells(out, parts[2])[3])
    assert after >= sum(float(cells(out, hop)[2]) for hop in hops[1:]) * 0.5

    order = cells(out, "order saga")
    assert int(order[1]) >= 5 and int(order[2].split()[0]) > 20  # store events; history events
    assert cells(out, "return saga")[1:] == ["6", "4 outbox rows, 4 inbox rows"]
    assert "order saga:  1 Temporal history" in out
    assert "4 consumers in 4 databases" in out and "(16 tables); 3 state tables" in out

    for saga in ("order saga (orchestrated)", "return saga (choreographed)"):
        total = cells(out, f"{saga}, total")
        short = saga.split()[0]
        rows = [
            re.split(r"\s{2,}", line.strip())
            for line in out.splitlines()
            if line.strip().startswith(f"{short}: ")
        ]
        assert len(rows) == 4
        for k in (2, 3, 4):  # files, lines, code: the parts add up to the total
            assert sum(int(r[k]) for r in rows) == int(total[k]) > 0
        assert all(0 < int(r[4]) < int(r[3]) for r in rows)  # code is fewer than all lines
