"""The workflow tier: the saga's logic on Temporal's time-skipping test server.

Its tests run on SQLite only: what they prove is the workflow's, the same on either database.
What the database decides (every activity and its tombstones, the races, an outage, the event
store, each outcome end to end with its books) runs on both in tests/integration.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def backend() -> str:
    return "sqlite"
