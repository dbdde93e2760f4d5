"""The stack's saga worker with the newest patches refused: the previous saga version.

    python -m bench.older_saga_worker saga-v8 [more patch ids...]

``workflow.patched(id)`` is how a saga keeps the code path of the version that started it; with
these ids refused, today's code takes the path its previous version took for every new saga,
which is exactly that version's behaviour (tests/workflows/test_upgrade.py plays upgrades the
same way). For bench/saga_versions.py: both versions side by side, in one run.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Callable

from temporalio import workflow


def refuse(patches: frozenset[str]) -> None:
    taken: Callable[[str], bool] = workflow.patched
    workflow.patched = lambda patch: patch not in patches and taken(patch)  # type: ignore[assignment]


def main() -> None:
    patches = frozenset(sys.argv[1:])
    if not patches:
        sys.exit("usage: python -m bench.older_saga_worker <patch id>...")
    refuse(patches)
    sys.argv = ["worker", "--service", "saga"]
    runpy.run_module("worker", run_name="__main__")


if __name__ == "__main__":
    main()
