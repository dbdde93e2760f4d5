"""A script that uses a Temporal client against a test server and exits: the pattern that aborts
at interpreter exit in about one run of four here (temporalio/sdk-python#300).

    python -m tests.system.exit_probe.client_probe [--plain]

It ends with ``exit_now(0)`` (what every CloudMart process does), or with a plain return under
``--plain`` (the baseline: docs/testing.md says how often that aborts).
"""

from __future__ import annotations

import asyncio
import sys

from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.testing import WorkflowEnvironment

from cloudmart.process import exit_now
from devstack.binaries import find_binary


async def use_a_client() -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_binary("temporal-test-server")
    )
    await env.client.workflow_service.get_system_info(GetSystemInfoRequest())
    await env.shutdown()


if __name__ == "__main__":
    asyncio.run(use_a_client())
    if "--plain" not in sys.argv:
        exit_now(0)
