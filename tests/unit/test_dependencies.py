"""The benchmarks' extras (DBOS Transact, the peer baseline) are theirs alone: the product
neither depends on them nor imports them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[2]
PRODUCT = ("cloudmart", "services", "activities", "workflows", "api", "chaos", "worker.py")


def test_dbos_is_only_in_the_bench_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    names = {
        group: {re.split(r"[<>=!\[ ]", spec)[0].lower() for spec in specs}
        for group, specs in {"product": project["dependencies"], **extras}.items()
    }
    assert "dbos" in names["bench"]
    assert [group for group, found in names.items() if "dbos" in found] == ["bench"]
    pinned = (ROOT / "constraints.txt").read_text().splitlines()
    assert any(line.startswith("dbos==") for line in pinned)


def test_no_product_module_imports_dbos() -> None:
    files = [
        path
        for part in PRODUCT
        for path in ([ROOT / part] if part.endswith(".py") else (ROOT / part).rglob("*.py"))
    ]
    assert len(files) > 50
    importing = [
        str(path.relative_to(ROOT))
        for path in files
        if re.search(r"^\s*(import dbos|from dbos\b)", path.read_text(), re.MULTILINE)
    ]
    assert importing == []
    assert re.search(r"^from dbos import", (ROOT / "bench/dbos_saga.py").read_text(), re.M)
