"""Engines and transactions, the same for every service, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import DateTime, Engine, TypeDecorator, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel

from cloudmart import tracing

ModelT = TypeVar("ModelT", bound=SQLModel)

SQLITE_BUSY_TIMEOUT_MS = 5_000
PG_CONNECT_TIMEOUT_S = 5


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and read back timezone-aware on every backend (SQLite's driver
    hands back naive datetimes, PostgreSQL's aware ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: timestamps must carry their timezone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def create_db_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine whose transactions are safe for the services' conditional updates.

    SQLite: WAL with ``synchronous=NORMAL`` (durable across process crashes, which is what the
    dev stack must survive), and every transaction begins with ``BEGIN IMMEDIATE`` so it takes
    the write lock up front: two transactions can never both read and then fail to upgrade.
    PostgreSQL (``postgresql+psycopg://``): a pool the size of the worker's activity concurrency
    (one connection per activity thread, as many again in overflow), pre-pinged so a restarted
    database costs a retry, not an error.

    Either way its errors never quote a statement's parameters (``hide_parameters``): they are
    order data, payment tokens and addresses among them, and an error goes to logs and to
    Temporal. (A driver's own message may still quote a row: activities/failures.py.)
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if not database or database == ":memory:":
            raise ValueError(f"{url}: SQLite databases must be files (services run in threads)")
        owner_only(Path(database))
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=pool_size,
            max_overflow=pool_size,
            hide_parameters=True,
        )
        event.listen(engine, "connect", _configure_sqlite_connection)
        event.listen(engine, "begin", _begin_immediate)
        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        # A database that is down fails the attempt in seconds (Temporal retries it), not hangs.
        connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S},
        hide_parameters=True,
    )


SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def owner_only(database: Path) -> None:
    """Create the SQLite file (and its directory) readable by its owner alone, or make an
    existing one so: payment.db holds payment tokens, shipping.db addresses.

    SQLite gives its -wal, -shm and -journal files the database file's mode, so creating the
    file first, 0600, covers them; companions left by an older version are narrowed here too. A
    directory this creates is 0700; an existing one is left as it is (it may be shared, /tmp).
    """
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for path in (database, *(Path(f"{database}{suffix}") for suffix in SQLITE_COMPANIONS)):
        # Another user's file is left as it is (it is then theirs to protect).
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself, instead of pysqlite's deferred BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _begin_immediate(connection: Any) -> None:
    # Reads (see read_only) take no write lock: in WAL mode they never wait for a writer.
    read = connection.get_execution_options().get(READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")


READ_ONLY = "cloudmart_read_only"


def read_only(engine: Engine) -> Engine:
    """The same engine (pool, settings) for reads that must not queue behind writers."""
    return engine.execution_options(**{READ_ONLY: True})


def database_name(engine: Engine) -> str:
    """The database's name: a SQLite file's name without its directory (which would name the
    machine's user), PostgreSQL's database."""
    database = engine.url.database or ""
    return Path(database).name if engine.dialect.name == "sqlite" else database


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any exception. Traced (a span in the
    trace of the step, request or batch it serves), where tracing is on."""
    with (
        tracing.span(
            "transaction",
            {"db.system.name": engine.dialect.name, "db.namespace": database_name(engine)},
        ),
        Session(engine, expire_on_commit=False) as session,
        session.begin(),
    ):
        yield session


def ping(engine: Engine) -> None:
    with read_only(engine).connect() as connection:
        connection.execute(text("SELECT 1"))


def insert_if_absent(session: Session, model: type[SQLModel], rows: list[dict[str, Any]]) -> int:
    """Insert rows, skipping those whose primary key exists; returns how many were inserted."""
    if not rows:
        return 0
    table = model.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    insert = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}[dialect]
    statement = insert(table).values(rows).on_conflict_do_nothing()
    # Count what RETURNING gives back: psycopg reports no rowcount for a multi-row insert.
    inserted = session.execute(statement.returning(*table.primary_key.columns)).all()
    return len(inserted)


def get_for_update(session: Session, model: type[ModelT], key: str) -> ModelT | None:
    """Read a row and hold its lock until the transaction ends (SQLite: the database lock)."""
    return session.get(model, key, with_for_update=True, populate_existing=True)


def get_or_tombstone(
    session: Session, model: type[ModelT], key: str, tombstone: dict[str, Any]
) -> tuple[ModelT, bool]:
    """The locked row for ``key``; if there is none, insert ``tombstone`` in its place.

    Returns the row and whether it is the tombstone just inserted. A compensation calls this so
    that a forward step arriving after it finds the mark and is refused.
    """
    row = get_for_update(session, model, key)
    if row is not None:
        return row, False
    inserted = insert_if_absent(session, model, [tombstone])
    row = get_for_update(session, model, key)
    if row is None:  # pragma: no cover - the insert either succeeded or met a committed row
        raise RuntimeError(f"{model.__name__} {key}: row vanished while inserting a tombstone")
    return row, inserted == 1
