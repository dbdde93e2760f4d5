"""Walk the audit log's hash chain and say whether it is intact.

    python -m services.audit.verify       # or: make audit-verify

Exit status 0, with the count and the head's hash (write it down elsewhere: an anchor that a
rewrite of the whole log cannot match); 1 naming the first broken entry (an edited one: a hash
mismatch at its sequence; a deleted one: the gap after the entry before it); 2 if the database
cannot be reached.
"""

from __future__ import annotations

import sys

from sqlalchemy.exc import OperationalError

from cloudmart.settings import get_settings
from services.factory import build_audit


def main() -> int:
    audit = build_audit(get_settings())
    try:
        verdict = audit.verify()
    except OperationalError as err:
        print(f"audit-verify: the audit database is unreachable: {err.orig}", file=sys.stderr)
        return 2
    finally:
        audit.engine.dispose()
    if verdict.broken is not None:
        print(
            f"audit log BROKEN at {verdict.broken} ({verdict.count} entries intact before it)",
            file=sys.stderr,
        )
        return 1
    print(
        f"audit log intact: {verdict.count} entries, head {verdict.head_sequence} "
        f"{verdict.head_hash}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
