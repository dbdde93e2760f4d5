"""The mutation score of the last ``mutmut run`` (``make mutation``), and the gate on it.

Reads mutmut's results (``mutants/<module>.py.meta``) for the modules ``[tool.mutmut]
only_mutate`` names, prints the score per module and in all, lists every mutant that was not
killed, and exits 1 when fewer than ``--min`` percent were killed (a timeout counts as killed:
the tests noticed the mutant). Anything else (survived, no tests, not checked, suspicious, a
crash) counts against the score. ``mutmut show <name>`` prints a mutant's diff.

    python .ci/mutation_score.py [--min 90]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import tomllib
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

ROOT = Path(__file__).resolve().parents[1]
DETECTED = ("killed", "timeout")


def results(root: Path) -> dict[str, dict[str, str]]:
    """Per mutated module (its path), each mutant's status, as mutmut names it."""
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mutmut"]
    patterns = config["only_mutate"]
    found: dict[str, dict[str, str]] = {}
    for meta in sorted((root / "mutants").rglob("*.py.meta")):
        module = meta.relative_to(root / "mutants").as_posix().removesuffix(".meta")
        if not any(fnmatch.fnmatch(module, pattern) for pattern in patterns):
            continue
        exit_codes = json.loads(meta.read_text())["exit_code_by_key"]
        found[module] = {name: status_by_exit_code[code] for name, code in exit_codes.items()}
    missing = [p for p in patterns if not any(fnmatch.fnmatch(m, p) for m in found)]
    if missing:
        raise SystemExit(f"no mutation results for {', '.join(missing)}: run `make mutation`")
    return found


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min", type=float, default=90.0, help="percent of mutants to kill")
    args = parser.parse_args(argv)

    by_module = results(ROOT)
    totals: Counter[str] = Counter()
    print(f"{'module':<24} {'mutants':>8} {'killed':>8} {'timeout':>8} {'other':>6} {'score':>7}")
    for module, statuses in by_module.items():
        counts = Counter(statuses.values())
        totals.update(counts)
        detected = sum(counts[s] for s in DETECTED)
        print(
            f"{module:<24} {len(statuses):>8} {counts['killed']:>8} {counts['timeout']:>8} "
            f"{len(statuses) - detected:>6} {percent(detected, len(statuses)):>7}"
        )
    total = sum(totals.values())
    detected = sum(totals[s] for s in DETECTED)

    undetected = [
        (name, status)
        for statuses in by_module.values()
        for name, status in statuses.items()
        if status not in DETECTED
    ]
    if undetected:
        print(f"\nnot killed ({len(undetected)}; `.venv/bin/mutmut show <name>` for the diff):")
        for name, status in undetected:
            print(f"  {status:<12} {name}")

    others = ", ".join(f"{n} {s}" for s, n in sorted(totals.items()) if s not in DETECTED)
    score = 100 * detected / total if total else 0.0
    print(
        f"\nmutation score: {score:.1f}% ({totals['killed']} killed + {totals['timeout']} "
        f"timeouts of {total} mutants; {others or 'no other'}); minimum {args.min:g}%"
    )
    if score < args.min:
        print(f"FAILED: fewer than {args.min:g}% of the mutants were killed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
