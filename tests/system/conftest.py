"""The system tier: the real stack (dev server, worker and API processes) over HTTP. Its stacks
keep their databases in SQLite files; PostgreSQL is covered by tests/integration and by
``make chaos CHAOS_ARGS=--postgres``. Beside the dev stack's API (customer auth off, as `make up`
runs it), a second API with tokens required."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from cloudmart.settings import Settings
from devstack.processes import free_port
from devstack.stack import DevStack
from tests.support import api_process


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture(scope="session")
def auth_settings(dev_stack: DevStack) -> Settings:
    """The dev stack's settings (its Temporal, task queues, databases), tokens required."""
    return dev_stack.settings.model_copy(update={"api_port": free_port(), "require_auth": True})


@pytest.fixture(scope="session")
def anonymous(auth_settings: Settings) -> Iterator[httpx.Client]:
    """A second ``python -m api`` with CLOUDMART_REQUIRE_AUTH on, and a client with no token."""
    with api_process(auth_settings) as client:
        yield client
