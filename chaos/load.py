"""Many sagas from one client process, checking that no process dies mid-run.

    python -m chaos.load [--sagas 1000] [--concurrency 50] [--runs 3]     # make load

A Python client once died under this load (1000 workflows at concurrency 50) with a fatal error
naming ``google._upb._message``: most likely the exit-time abort of temporalio/sdk-python#300.
Each run starts a fresh stack (file-backed dev server, worker, API), then a child process that
starts the sagas through the Temporal client and waits for each to end. The child prints its
result before it exits, so a non-zero status tells where it died: before the result (mid-run)
or after it (at exit). Every stack process must still be running after the load and exit 0 on
SIGTERM. ``--plain-exit`` ends the child with a plain return instead of ``exit_now``, to see
the exit-time hazard itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from bench.stats import table
from cloudmart.process import exit_now
from devstack.stack import DevStack, settings_env, throwaway_settings

RESULT = "LOAD RESULT "
SKUS = ("KB-MECH-01", "MOUSE-ERGO-01", "ARM-DUAL-01", "LAMP-LED-01", "CABLE-USBC-2M", "HUB-USBC-7")


async def child(sagas: int, concurrency: int) -> dict[str, object]:
    """Runs in the child process: start every saga through the client and wait for its end."""
    from cloudmart.contracts.orders import OrderItem, PlaceOrder, ShippingAddress
    from cloudmart.contracts.saga import workflow_id
    from cloudmart.settings import get_settings
    from cloudmart.temporal import connect
    from workflows.order_saga import OrderSaga

    settings = get_settings()
    client = await connect(settings)  # the stack's encrypting converter
    address = ShippingAddress(
        name="Load", line1="1 Main St", city="Utrecht", postal_code="3511", country="NL"
    )
    gate = asyncio.Semaphore(concurrency)
    outcomes: Counter[str] = Counter()

    async def one(n: int) -> None:
        order = PlaceOrder(
            customer_id=f"load-{n % 50}",
            items=[OrderItem(sku=SKUS[n % len(SKUS)], quantity=1)],
            payment_token="tok_ok",
            shipping_address=address,
        )
        saga = settings.saga_input(str(uuid.uuid4()), order)
        async with gate:
            state = await client.execute_workflow(
                OrderSaga.run,
                saga,
                id=workflow_id(saga.order_id),
                task_queue=saga.task_queues.orders,
            )
        outcomes[state.status.value] += 1

    await asyncio.gather(*(one(n) for n in range(sagas)))
    return dict(outcomes)


def describe(status: int) -> str:
    if status < 0:
        return f"{signal.Signals(-status).name} ({status})"
    return str(status)


def one_run(n: int, sagas: int, concurrency: int, plain_exit: bool) -> tuple[list[str], bool]:
    """One fresh stack, one child; the table row and whether everything exited as it should."""
    with tempfile.TemporaryDirectory(prefix="cloudmart-load-") as data:
        settings = throwaway_settings(Path(data), task_queue_prefix=f"load-{uuid.uuid4().hex[:6]}")
        env = settings_env(settings)
        stack = DevStack(settings, env, output=None, persist=True)
        stack.start()
        try:
            command = [sys.executable, "-m", "chaos.load", "--child", str(sagas), str(concurrency)]
            started = time.monotonic()
            done = subprocess.run(
                [*command, *(["--plain-exit"] if plain_exit else [])],
                env=env,
                capture_output=True,
                text=True,
            )
            seconds = time.monotonic() - started
            dead = [
                f"{p.name} {describe(p.popen.returncode)}"
                for p in stack.processes.values()
                if not p.running
            ]
        finally:
            stopped = stack.stop()
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    outcomes: dict[str, int] = json.loads(lines[0].removeprefix(RESULT)) if lines else {}
    ended = sum(outcomes.values())
    if done.returncode == 0:
        where = "-"
    else:
        where = "at exit (after its result)" if lines else "mid-run (no result)"
        print(f"run {n}: child exited {describe(done.returncode)}:\n{done.stderr[-3000:]}")
    stack_ok = not dead and set(stopped.values()) == {0}
    row = [
        str(n),
        f"{ended}/{sagas}",
        ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "-",
        f"{seconds:.1f}",
        f"{ended / seconds:.1f}",
        describe(done.returncode),
        where,
        ", ".join(dead) or ", ".join(f"{k} {describe(v)}" for k, v in stopped.items()),
    ]
    return row, done.returncode == 0 and ended == sagas and stack_ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sagas", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--plain-exit", action="store_true", help="the child returns normally")
    args = parser.parse_args()
    rows, good = [], True
    for n in range(1, args.runs + 1):
        row, ok = one_run(n, args.sagas, args.concurrency, args.plain_exit)
        rows.append(row)
        good &= ok
        print(f"run {n}: {'ok' if ok else 'FAILED'}", flush=True)
    headers = ["run", "ended", "outcomes", "wall s", "sagas/s", "child exit", "died", "stack"]
    print(table(rows, headers))
    return 0 if good else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        outcomes = asyncio.run(child(int(sys.argv[2]), int(sys.argv[3])))
        print(RESULT + json.dumps(outcomes), flush=True)
        if "--plain-exit" in sys.argv:
            sys.exit(0)  # the interpreter's own finalization: what sdk-python#300 is about
        exit_now(0)
    exit_now(main())
