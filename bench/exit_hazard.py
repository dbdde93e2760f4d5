"""How often a process that used a Temporal client dies at exit (temporalio/sdk-python#300),
ending normally versus through ``cloudmart.process.exit_now``, in the same run.

    python -m bench.exit_hazard [--runs 40]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.stats import table

ROOT = Path(__file__).parent.parent
PROBE = [sys.executable, "-m", "tests.exit_probe.client_probe"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    runs = parser.parse_args().runs
    rows = []
    for name, extra in (("plain return (baseline)", ["--plain"]), ("exit_now", [])):
        statuses = Counter(
            subprocess.run([*PROBE, *extra], cwd=ROOT, capture_output=True).returncode
            for _ in range(runs)
        )
        bad = runs - statuses[0]
        detail = ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
        rows.append([name, str(runs), str(bad), f"{100 * bad / runs:.0f}%", detail])
    print(table(rows, ["ending", "runs", "non-zero", "rate", "exit statuses"]))


if __name__ == "__main__":
    main()
