"""Where a benchmark's figures go: ``bench/results/<name>.md``, written by the benchmark itself
with what produced them (the command, the commit, the machine, the date), and the block of
docs/performance.md that includes that file. Nobody pastes a figure by hand.

In docs/performance.md a result is included between two markers, which the benchmark rewrites::

    <!-- results/saga.md -->
    ...
    <!-- end results/saga.md -->
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
GIT_STATUS = ("git", "status", "--porcelain", "--untracked-files=no", "--", ".")
DOCS = Path(__file__).parents[1] / "docs" / "performance.md"


def add_results_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help="where the result file goes (default: bench/results, included by the docs)",
    )


def publish(name: str, text: str, directory: Path = RESULTS) -> Path:
    """Write ``text`` (what the benchmark printed) as ``<directory>/<name>.md``; when that is
    bench/results, also into docs/performance.md's block for it. Returns the file written."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.md"
    body = f"{provenance()}\n\n```\n{text.strip()}\n```\n"
    path.write_text(body)
    if directory.resolve() == RESULTS.resolve() and DOCS.is_file():
        include(DOCS, f"results/{name}.md", body)
    return path


def include(document: Path, key: str, body: str) -> bool:
    """Replace the block of ``document`` between ``key``'s markers with ``body``."""
    pattern = re.compile(
        rf"(<!-- {re.escape(key)} -->\n).*?(<!-- end {re.escape(key)} -->)", re.DOTALL
    )
    text = document.read_text()
    if not pattern.search(text):
        return False
    document.write_text(pattern.sub(lambda m: m.group(1) + body + m.group(2), text))
    return True


def provenance() -> str:
    command = " ".join([f"python -m bench.{Path(sys.argv[0]).stem}", *sys.argv[1:]])
    return (
        f"`{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit()}; "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs"
    )


def commit() -> str:
    root = Path(__file__).parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        # What the benchmarks themselves write does not count as a change to the code.
        dirty = subprocess.run(
            [*GIT_STATUS, ":!bench/results", ":!docs/performance.md"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{sha or 'unknown'}{' (with uncommitted changes)' if dirty else ''}"
