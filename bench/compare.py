"""Two versions of the code compared through make bench's output, each run at least twice.

    python -m bench.compare --name saga-1.0 --before b1.md b2.md --after a1.md a2.md

Reads the tables that compare each row with the floors of its own run and, against each floor
(the eager one, and the one whose activities go to another queue as the saga's steps do), for
every row and concurrency prints the ratios of each run, the run-to-run noise (the widest spread
between two runs of the same code) and the change (the mean after minus the mean before). A
change is *worse beyond the noise* when it is worse than the noise of either version: the test a
change to the saga must pass before it lands. The hops floor runs no code of ours: its own ratio
to the eager floor moving is the machine, and says how far to trust the noise.
"""

from __future__ import annotations

import argparse
import re
import statistics
from pathlib import Path

from bench.results import add_results_option, publish
from bench.stats import table

Table = dict[tuple[str, int], tuple[float, float]]
"""(row, concurrency) -> (p50 ms, sagas per s), in one table of a run."""
Ratios = dict[tuple[str, int], tuple[float, float]]
"""(row, concurrency) -> (p50 / the floor's, per s / the floor's), within one run."""
FLOOR, HOPS_FLOOR = "floor", "floor, another queue"


def tables(report: str) -> list[Table]:
    """Every table of ``report`` that compares its rows with the floor, in order."""
    found: list[Table] = []
    lines = report.splitlines()
    for i, line in enumerate(lines):
        headers = re.split(r"\s{2,}", line.strip())
        if "p50/floor" not in headers or headers[0] != "row":
            continue
        rows: Table = {}
        for row in lines[i + 2 :]:
            cells = re.split(r"\s{2,}", row.strip())
            if len(cells) != len(headers):
                break
            named = dict(zip(headers, cells, strict=True))
            rows[(named["row"], int(named["C"]))] = (float(named["p50 ms"]), float(named["per s"]))
        found.append(rows)
    return found


def ratios(report: str, floor: str = FLOOR) -> Ratios:
    """Each row's p50 and throughput as ratios to ``floor``'s, in the same table of the run (a
    row's first table is its own phase's: a later one repeats the floors)."""
    found: Ratios = {}
    for rows in tables(report):
        for (name, concurrency), (p50, per_s) in rows.items():
            base = rows.get((floor, concurrency))
            if base is None or name in (FLOOR, floor) or (name, concurrency) in found:
                continue
            found[(name, concurrency)] = (p50 / base[0], per_s / base[1])
    return found


def compare(before: list[Ratios], after: list[Ratios]) -> tuple[str, list[str]]:
    rows, worse = [], []
    for key in [k for k in after[0] if all(k in run for run in [*before, *after])]:
        cells = [key[0], str(key[1])]
        for index, (what, bad) in enumerate((("p50", 1), ("per s", -1))):
            b, a = [run[key][index] for run in before], [run[key][index] for run in after]
            noise = max(max(b) - min(b), max(a) - min(a))
            change = statistics.mean(a) - statistics.mean(b)
            cells += ["/".join(f"{x:.2f}" for x in b), "/".join(f"{x:.2f}" for x in a)]
            cells += [f"{noise:.2f}", f"{change:+.2f}"]
            if change * bad > noise:
                where = f"{key[0]} at C={key[1]}"
                worse.append(f"{where}: {what} ratio {change:+.2f}, noise {noise:.2f}")
        rows.append(cells)
    headers = ["row", "C", "p50 ratio before", "after", "noise", "change"]
    headers += ["per s ratio before", "after", "noise", "change"]
    return table(rows, headers), worse


def verdict(worse: list[str]) -> str:
    if not worse:
        return "no row's ratio is worse beyond the run-to-run noise"
    return "worse beyond the noise:\n  " + "\n  ".join(worse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the result file's name")
    parser.add_argument("--before", type=Path, nargs="+", required=True)
    parser.add_argument("--after", type=Path, nargs="+", required=True)
    add_results_option(parser)
    args = parser.parse_args()
    if len(args.before) < 2 or len(args.after) < 2:
        parser.error("the noise needs two runs of each version at least")
    parts = []
    for floor, what in (
        (FLOOR, "Each row against the floor (eager activities on the saga's own queue):"),
        (HOPS_FLOOR, "Each row against the floor with its activities on another queue:"),
    ):
        before = [ratios(path.read_text(), floor) for path in args.before]
        after = [ratios(path.read_text(), floor) for path in args.after]
        compared, worse = compare(before, after)
        parts += [what, compared, "", verdict(worse), ""]
    runs = ", ".join(path.name for path in [*args.before, *args.after])
    text = "\n".join([*parts, f"(runs, before then after: {runs})"])
    print(text)
    print(f"written: {publish(args.name, text, args.results)}")


if __name__ == "__main__":
    main()
