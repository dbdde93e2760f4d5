"""What the worker does for its own speed (bench/profile_saga.py measured each)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from worker import WORKFLOW_MODULES, write_workflow_bytecode


def test_workflow_bytecode_is_written_even_where_imports_may_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "saga.py"
    module.write_text("STEPS = 5\n")
    monkeypatch.setattr("sys.dont_write_bytecode", True)
    write_workflow_bytecode(tmp_path)
    assert Path(importlib.util.cache_from_source(str(module))).is_file()


def test_the_workflow_modules_are_the_sagas() -> None:
    assert (WORKFLOW_MODULES / "order_saga.py").is_file()
