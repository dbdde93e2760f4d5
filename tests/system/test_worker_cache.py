"""The saga worker's settings that `python -m worker` hands the SDK's worker: the saga cache's
size (CLOUDMART_MAX_CACHED_WORKFLOWS, the SDK's default unless set) and the workflow sandbox
(CLOUDMART_WORKFLOW_SANDBOX, on unless set)."""

from __future__ import annotations

import inspect
import uuid
from pathlib import Path

import pytest
from temporalio.worker import Worker

from cloudmart.settings import Settings
from devstack.stack import DevStack, throwaway_settings
from tests.support import worker_process


def test_the_default_is_the_sdks_and_the_environment_sets_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sdk_default = inspect.signature(Worker).parameters["max_cached_workflows"].default
    monkeypatch.delenv("CLOUDMART_MAX_CACHED_WORKFLOWS", raising=False)
    assert Settings().max_cached_workflows == sdk_default == 1000
    monkeypatch.setenv("CLOUDMART_MAX_CACHED_WORKFLOWS", "7")
    assert Settings().max_cached_workflows == 7
    monkeypatch.setenv("CLOUDMART_MAX_CACHED_WORKFLOWS", "-1")
    with pytest.raises(ValueError, match="max_cached_workflows"):
        Settings()


@pytest.mark.parametrize("size", [7, 0])  # 0: no cache and no sticky queues, as documented
def test_the_worker_process_gives_the_sdks_worker_the_configured_cache(
    dev_stack: DevStack, tmp_path: Path, size: int
) -> None:
    # Its own task queues: it must not take the shared stack's sagas.
    settings = throwaway_settings(
        tmp_path,
        temporal_address=dev_stack.settings.temporal_address,
        task_queue_prefix=f"cache-{uuid.uuid4().hex[:6]}",
        max_cached_workflows=size,
    )
    with worker_process(settings) as worker:
        ready = [line for line in worker.tail if "worker ready" in line]
    # The size is read back from the SDK's Worker, not from the settings.
    assert len(ready) == 1 and ready[0].endswith(f"; caches up to {size} sagas"), worker.tail


def test_the_sandbox_is_on_unless_the_environment_turns_it_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CLOUDMART_WORKFLOW_SANDBOX", raising=False)
    assert Settings().workflow_sandbox is True
    monkeypatch.setenv("CLOUDMART_WORKFLOW_SANDBOX", "false")
    assert Settings().workflow_sandbox is False
    monkeypatch.setenv("CLOUDMART_WORKFLOW_SANDBOX", "sometimes")
    with pytest.raises(ValueError, match="workflow_sandbox"):
        Settings()


@pytest.mark.parametrize("sandbox", [True, False], ids=["sandboxed", "unsandboxed"])
def test_the_worker_process_runs_the_saga_in_the_sandbox_unless_told_not_to(
    dev_stack: DevStack, tmp_path: Path, sandbox: bool
) -> None:
    settings = throwaway_settings(
        tmp_path,
        temporal_address=dev_stack.settings.temporal_address,
        task_queue_prefix=f"sandbox-{uuid.uuid4().hex[:6]}",
        workflow_sandbox=sandbox,
    )
    with worker_process(settings) as worker:
        ready = [line for line in worker.tail if "worker ready" in line]
    # Read back from the SDK's Worker's runner, not from the settings.
    assert len(ready) == 1, worker.tail
    assert ready[0].endswith("; workflow sandbox off") is not sandbox, ready[0]
