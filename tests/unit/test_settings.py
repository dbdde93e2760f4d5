"""The one settings object: durations as docs/configuration.md gives them, bounds that refuse
what would break a saga, the saga input it builds, and a table in the docs that lists every
setting (tests/system/test_startup_refusals.py: what a program does with a bad value)."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from cloudmart.settings import Settings
from tests.support import place_order

ROOT = Path(__file__).parents[2]
DURATIONS = [
    "payment_review_timeout",
    "compensation_stuck_after",
    "compensation_retry_cap",
    "events_window",
]


@pytest.mark.parametrize("name", DURATIONS)
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30", timedelta(seconds=30)),
        ("2.5", timedelta(seconds=2.5)),
        ("PT45S", timedelta(seconds=45)),
    ],
    ids=["seconds", "fractional", "iso-8601"],
)
def test_a_duration_is_seconds_or_iso_8601(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: timedelta
) -> None:
    monkeypatch.setenv(f"CLOUDMART_{name.upper()}", value)
    assert getattr(Settings(), name) == expected


@pytest.mark.parametrize("name", DURATIONS)
@pytest.mark.parametrize("value", ["0", "-5", "abc", "nan"])
def test_a_duration_that_is_not_positive_or_not_a_duration_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"CLOUDMART_{name.upper()}", value)
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert [error["loc"] for error in raised.value.errors()] == [(name,)]


def test_the_events_window_is_at_most_ten_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDMART_EVENTS_WINDOW", "600")
    assert Settings().events_window == timedelta(minutes=10)
    monkeypatch.setenv("CLOUDMART_EVENTS_WINDOW", "601")
    with pytest.raises(ValidationError, match="less than or equal to 10 minutes"):
        Settings()


def test_the_saga_input_carries_the_deployments_policies() -> None:
    settings = Settings(
        task_queue_prefix="shop",
        payment_review_timeout=timedelta(hours=2),
        compensation_retry_cap=timedelta(minutes=1),
        events_window=timedelta(seconds=7),
    )
    order_id = str(uuid.uuid4())
    saga = settings.saga_input(order_id, place_order())
    assert (saga.order_id, saga.customer_id) == (order_id, "c-42")
    assert saga.task_queues.payment == "shop-payment"
    assert saga.payment_review_timeout == timedelta(hours=2)
    assert saga.stuck_policy.retry_cap == timedelta(minutes=1)
    assert saga.events_window == timedelta(seconds=7)


def test_every_setting_is_in_the_docs_configuration_table() -> None:
    section = (ROOT / "docs" / "configuration.md").read_text()
    rows = set(re.findall(r"^\| `(CLOUDMART_[A-Z_]+)`", section, re.M))
    rows |= set(re.findall(r"^\| `CLOUDMART_[A-Z_]+` / `(CLOUDMART_[A-Z_]+)`", section, re.M))
    assert {f"CLOUDMART_{name.upper()}" for name in Settings.model_fields} <= rows
