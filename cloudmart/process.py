"""Reliable exit codes for processes that used a Temporal client or worker.

Such a process can abort while the interpreter finalizes, after all its work is done
(``Fatal Python error: PyGILState_Release ... finalizing``, exit 134 or 139; about one run in
four on our CI machine): the SDK's native runtime threads outlive Python's teardown. See
https://github.com/temporalio/sdk-python/issues/300. Workers and clients are shut down in order
first; then the process ends with ``os._exit``, which skips the finalization that crashes, after
flushing what Python would have flushed, so the exit status is the one the program chose.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import NoReturn

from cloudmart import tracing


def exit_now(status: int) -> NoReturn:
    tracing.shutdown()  # the spans still buffered: the provider's own atexit will not run
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe
            stream.flush()
    os._exit(status)
