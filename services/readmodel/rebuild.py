"""Throw the read side's projections away and rebuild them from the order events.

    python -m services.readmodel.rebuild       # or: make rebuild-projections

Safe while the system runs: the rebuild is one transaction, so readers keep the old tables until
the new ones are complete, and the running projector waits for it, then carries on from there.

Each run is recorded in the audit log (docs/audit.md) as actor kind ``system`` (a command run
with the system's own database credentials, not a token the API checked), named by
``CLOUDMART_OPERATOR`` or else the OS user.
"""

from __future__ import annotations

import getpass
import re
import sys
import time
import uuid

from sqlalchemy.exc import OperationalError

from cloudmart.settings import Settings, get_settings
from services.audit.chain import Action
from services.factory import build_audit, build_projector, prepare

ACTION = "cli rebuild-projections"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


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
        record(settings, "failed: a database is unreachable")
        return 1
    except Exception as err:
        record(settings, f"failed: {type(err).__name__}")
        raise
    finally:
        projector.engine.dispose()
        projector.store.engine.dispose()
    if not record(settings, "ok"):
        return 1
    print(f"projections rebuilt from {projected} events in {seconds:.2f} s")
    return 0


def who(settings: Settings) -> str:
    """``CLOUDMART_OPERATOR``, else the OS user: a short handle, or ``(not a name)`` rather than
    free text (an e-mail address, a full name) that the audit log could never forget."""
    name = settings.operator or getpass.getuser()
    return name if NAME.fullmatch(name) else "(not a name)"


def record(settings: Settings, outcome: str) -> bool:
    """Append the run to the audit log; False (said on stderr) if it could not be."""
    audit = build_audit(settings)
    try:
        audit.append(
            Action(
                actor_kind="system",
                actor=who(settings),
                action=ACTION,
                resource="/projections",
                request_id=f"cli-{uuid.uuid4().hex}",
                outcome=outcome,
            )
        )
    except OperationalError as err:
        print(
            f"rebuild-projections: not recorded in the audit log, its database is unreachable: "
            f"{err.orig}",
            file=sys.stderr,
        )
        return False
    finally:
        audit.engine.dispose()
    return True


if __name__ == "__main__":
    sys.exit(main())
