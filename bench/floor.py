"""The floors: bare workflows of N sequential no-op activities, and a worker process for them.

python -m bench.floor --address HOST:PORT --task-queue Q [--task-queue Q2 ...]

- ``Floor``: regular activities, on the workflow's own queue (eager dispatch: the least a
  regular activity costs) or, given ``activity_queue``, on another one, as the saga's steps go
  to their services' queues (each one a poll through the matching service).
It runs in the SDK's default sandbox, as the saga does unless told otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

from cloudmart.process import exit_now


@activity.defn
async def noop() -> None:
    return None


@workflow.defn
class Floor:
    @workflow.run
    async def run(self, steps: int, activity_queue: str | None) -> None:
        for _ in range(steps):
            await workflow.execute_activity(
                noop, task_queue=activity_queue, start_to_close_timeout=timedelta(seconds=10)
            )


async def serve(address: str, queues: list[str]) -> None:
    client = await Client.connect(address)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    workers = [Worker(client, task_queue=q, workflows=[Floor], activities=[noop]) for q in queues]
    for worker in workers:
        await worker.__aenter__()
    print("worker ready", flush=True)
    await stop.wait()
    for worker in workers:
        await worker.__aexit__(None, None, None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", action="append", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.address, args.task_queue))
    exit_now(0)
