"""Run by tests/test_exit_status.py in a pytest subprocess (never collected on its own: the
file name does not start with test_). It does what every workflow test does: a Temporal test
server, the saga's workers, one saga. PROBE_FAIL=1 adds a failing assertion."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from cloudmart.contracts.orders import OrderStatus
from cloudmart.contracts.saga import workflow_id
from cloudmart.settings import SERVICES, Settings
from cloudmart.temporal import register_search_attributes
from devstack.binaries import find_binary
from services.factory import open_services, prepare
from tests.support import CATALOG, new_saga_input
from worker import running_workers
from workflows.order_saga import OrderSaga


async def test_one_saga(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, task_queue_prefix=f"p-{uuid.uuid4().hex[:8]}")
    services = open_services(settings, ("event_store", *SERVICES))
    for service in services.hosted():
        prepare(service, settings)
    services.inventory.seed(CATALOG)  # type: ignore[union-attr]
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    ) as env:
        await register_search_attributes(env.client)
        async with running_workers(
            env.client,
            settings.task_queues,
            orchestrator=True,
            services=services,
            activity_threads=2,
        ):
            saga = new_saga_input(settings)
            state = await env.client.execute_workflow(
                OrderSaga.run,
                saga,
                id=workflow_id(saga.order_id),
                task_queue=settings.task_queues.orders,
            )
    services.dispose()
    assert state.status is OrderStatus.COMPLETED
    assert os.environ.get("PROBE_FAIL") != "1", "failing on purpose"


async def test_a_client_call() -> None:
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_binary("temporal-test-server")
    ) as env:
        await env.client.workflow_service.get_system_info(GetSystemInfoRequest())
