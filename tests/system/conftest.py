"""The system tier: the real stack (dev server, worker and API processes) over HTTP. Its stacks
keep their databases in SQLite files; PostgreSQL is covered by tests/integration and by
``make chaos CHAOS_ARGS=--postgres``."""

from __future__ import annotations

import pytest


@pytest.fixture
def backend() -> str:
    return "sqlite"
