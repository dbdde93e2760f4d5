"""``python -m worker --service saga`` (the saga and every service), with each activity's passage
through the worker timed: for bench/profile_saga.py.

    python -m bench.timed_worker --timings FILE

Appends one JSON line per activity attempt to FILE: the workflow and activity ids, and the wall
clock (ms since the epoch, the same clock as the server's history on one machine) when the SDK
handed the decoded activity to the interceptors, when a thread of its service's pool began
running it, when that thread finished, and when the result was back on the event loop (the SDK
then encodes it and reports the completion). The histories' started and completed events
bracket these marks.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import inspect
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from cloudmart.process import exit_now
from cloudmart.settings import get_settings
from worker import GROUPS, serve


class ActivityTimings(Interceptor):
    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Timed(next, self.out)


def _now() -> float:
    return time.time() * 1000


class _Timed(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, out: IO[str]) -> None:
        super().__init__(next)
        self.out = out

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        marks = {"entered": _now()}
        if not inspect.iscoroutinefunction(input.fn):
            input = dataclasses.replace(input, fn=_marking(input.fn, marks))
        try:
            return await super().execute_activity(input)
        finally:
            marks["left"] = _now()
            record = {"workflow_id": info.workflow_id, "activity_id": info.activity_id, **marks}
            record |= {"attempt": info.attempt, "type": info.activity_type}
            self.out.write(json.dumps(record) + "\n")


def _marking(fn: Callable[..., Any], marks: dict[str, float]) -> Callable[..., Any]:
    def timed(*args: Any) -> Any:
        marks["thread_start"] = _now()
        try:
            return fn(*args)
        finally:
            marks["thread_end"] = _now()

    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timings", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    status = 0
    # Line-buffered: the benchmark reads the file while this worker runs.
    with args.timings.open("a", buffering=1) as out:
        try:
            asyncio.run(serve(get_settings(), GROUPS["saga"], interceptors=[ActivityTimings(out)]))
        except Exception:
            logging.exception("timed worker stopped on an error")
            status = 1
    exit_now(status)


if __name__ == "__main__":
    main()
