"""The chaos run: orders through the API while workers, the Temporal server and a database fail.

    python -m chaos [--orders 300] [--returns 30] [--split] [--postgres] ...   # make chaos

Prints what was done and each check's verdict; exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from pathlib import Path

from chaos.report import render
from chaos.run import POSTGRES_ADMIN_URL, Options, run
from cloudmart.process import exit_now


def parse(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=20)
    topology = parser.add_mutually_exclusive_group()
    topology.add_argument("--split", action="store_true", help="one worker process per service")
    topology.add_argument("--single", dest="split", action="store_false", help="(default)")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="service databases on PostgreSQL (databases of the run's own, dropped after)",
    )
    parser.add_argument("--postgres-url", default=POSTGRES_ADMIN_URL, help="an admin connection")
    parser.add_argument("--kill-every", type=float, default=4.0, metavar="SECONDS")
    parser.add_argument("--outage-seconds", type=float, default=10.0)
    parser.add_argument(
        "--temporal-down", type=float, default=3.0, help="seconds before Temporal is restarted"
    )
    parser.add_argument(
        "--follow-seconds",
        type=float,
        default=5.0,
        help="a customer follows its order this long at most before placing the next",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--returns",
        type=int,
        default=30,
        help="completed orders returned while the faults go on (part or whole, some rejected)",
    )
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="every saga must end within this long after the faults stop",
    )
    parser.add_argument(
        "--data-dir", type=Path, help="keep the stack's state and logs here (default: temporary)"
    )
    args = parser.parse_args(argv)
    return Options(**vars(args))


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    logging.basicConfig(level=logging.WARNING)
    print(
        f"chaos: {options.orders} orders at concurrency {options.concurrency}, "
        f"a SIGKILL every {options.kill_every:g}s...",
        flush=True,
    )
    report = run(options)
    print(render(report), flush=True)
    return 1 if report.violations else 0


if __name__ == "__main__":
    try:
        status = main(sys.argv[1:])
    except Exception:
        traceback.print_exc()
        status = 2
    exit_now(status)
