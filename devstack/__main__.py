"""``make up``: ``python -m devstack`` (``--split``: one worker process per service)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from pydantic import ValidationError

from cloudmart.credentials import with_dev_credentials
from cloudmart.settings import get_settings
from devstack.processes import StackError
from devstack.stack import DevStack, banner, secrets_env


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the dev stack (make up).")
    parser.add_argument(
        "--split", action="store_true", help="one worker process per service (make up-split)"
    )
    split = parser.parse_args().split
    try:
        settings = with_dev_credentials(get_settings())
    except ValidationError as err:
        print(f"make up: invalid settings:\n{err}", file=sys.stderr)
        sys.exit(2)
    stack = DevStack(settings, {**os.environ, **secrets_env(settings)}, split=split)
    interrupted = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    signal.signal(signal.SIGTERM, lambda *_: interrupted.set())
    status = 0
    try:
        workers = f"{len(stack.worker_names)} worker processes" if split else "2 workers"
        print(f"Starting CloudMart Sagas (Temporal dev server, {workers}, API)...", flush=True)
        stack.start()
        print(banner(stack), flush=True)
        while not interrupted.wait(0.5):
            dead = stack.supervise()  # restarts a crashed worker; Temporal or the API: stop
            if dead is not None:
                print(dead.failure(f"stopped unexpectedly (status {dead.popen.returncode})"))
                status = 1
                break
    except StackError as err:
        print(f"make up: {err}", file=sys.stderr)
        status = 1
    finally:
        print("Stopping...", flush=True)
        for name, code in stack.stop().items():
            if code not in (0, -signal.SIGTERM):
                print(f"  {name} exited with status {code}", flush=True)
    sys.exit(status)


main()
