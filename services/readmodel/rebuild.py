"""Throw the read side's projections away and rebuild them from the order events.

    python -m services.readmodel.rebuild       # or: make rebuild-projections

Safe while the system runs: the rebuild is one transaction, so readers keep the old tables until
the new ones are complete, and the running projector waits for it, then carries on from there.
"""

from __future__ import annotations

import sys
import time

from sqlalchemy.exc import OperationalError

from cloudmart.settings import get_settings
from services.factory import build_projector, prepare


def main() -> int:
    settings = get_settings()
    projector = build_projector(settings)
    try:
        started = time.perf_counter()
        prepare(projector, settings)
        projected = projector.rebuild()
        seconds = time.perf_counter() - started
    except OperationalError as err:
        print(f"rebuild-projections: a database is unreachable: {err.orig}", file=sys.stderr)
        return 1
    finally:
        projector.engine.dispose()
        projector.store.engine.dispose()
    print(f"projections rebuilt from {projected} events in {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
