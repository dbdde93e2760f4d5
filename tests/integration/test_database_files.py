"""The services' SQLite files are their owner's alone: payment.db holds payment tokens,
shipping.db addresses. So are the write-ahead log and shared-memory files SQLite makes beside
them, and a data directory the services create."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudmart.settings import SERVICES, Settings
from services.database import create_db_engine
from services.factory import open_services, prepare
from tests.support import CATALOG


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The common default, under which SQLite alone would make its files 0644."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_services_databases_and_their_companions_are_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    services = open_services(Settings(data_dir=data_dir, seed_demo_catalog=False), SERVICES)
    try:
        for service in services.hosted():
            prepare(service, Settings(data_dir=data_dir, seed_demo_catalog=False))
        assert services.inventory is not None
        services.inventory.seed(CATALOG)  # a write: the write-ahead log and shared memory exist
        files = sorted(data_dir.iterdir())
        names = {f.name for f in files}
        assert {"payment.db", "payment.db-wal", "payment.db-shm", "shipping.db"} <= names
        assert {f.name: mode(f) for f in files} == {name: 0o600 for name in names}
        assert mode(data_dir) == 0o700
    finally:
        services.dispose()


def test_files_left_readable_by_an_older_version_are_narrowed(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    directory.mkdir(mode=0o755)
    database = directory / "payment.db"
    companions = [Path(f"{database}{suffix}") for suffix in ("", "-wal", "-shm")]
    for path in companions:
        path.touch(mode=0o644)
    create_db_engine(f"sqlite:///{database}").dispose()
    assert [mode(path) for path in companions] == [0o600] * 3
    assert mode(directory) == 0o755  # an existing directory is left as it is: it may be shared
