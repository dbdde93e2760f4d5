"""Schema migrations: one Alembic history per service, in ``services/<service>/migrations``.

    python -m services.migrations                    # upgrade every service's database to head
    python -m services.migrations inventory payment  # just these
    alembic -c services/inventory/alembic.ini upgrade head   # the plain Alembic CLI works too

The worker upgrades the databases of the services it hosts before it polls, so ``make up``, the
containers and the tests all get their schema the same way. Several replicas starting at once
are safe: on PostgreSQL the upgrade holds an advisory lock; on SQLite, the database's write lock.
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from sqlalchemy import Engine, MetaData, text
from sqlmodel.sql.sqltypes import AutoString

from cloudmart.settings import get_settings
from services.database import create_db_engine

HERE = Path(__file__).parent
MIGRATED = (
    "event_store",
    "customers",
    "inventory",
    "payment",
    "shipping",
    "readmodel",
    "loyalty",
    "activity",
    "audit",
)
"""The databases with a migration history (the simulated provider, an outside system, has none)."""


def alembic_config(service: str) -> Config:
    config = Config(str(HERE / service / "alembic.ini"))
    config.set_main_option("script_location", str(HERE / service / "migrations"))
    return config


def upgrade(service: str, engine: Engine, revision: str = "head") -> None:
    """Bring ``service``'s database (behind ``engine``) to ``revision``."""
    config = alembic_config(service)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Held until this transaction ends: a second replica waits, then finds it done.
            lock = zlib.crc32(f"cloudmart-migrations-{service}".encode())
            connection.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": lock})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    # Revisions should not depend on SQLModel's internal string type: render it as sa.String.
    if type_ == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


def run_env(target_metadata: MetaData, service: str) -> None:
    """The body of every service's ``env.py``."""
    config = context.config
    options: dict[str, Any] = {
        "target_metadata": target_metadata,
        "compare_type": True,
        "version_table": "alembic_version",
        "render_item": _render_item,
    }
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, render_as_batch=connection.dialect.name == "sqlite", **options
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    # The plain `alembic` CLI: the URL comes from the settings (CLOUDMART_<SERVICE>_DB_URL).
    engine = create_db_engine(get_settings().db_url(service), pool_size=1)
    with engine.begin() as connection:
        context.configure(
            connection=connection, render_as_batch=connection.dialect.name == "sqlite", **options
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


def main(argv: list[str]) -> None:
    settings = get_settings()
    for service in argv or MIGRATED:
        if service not in MIGRATED:
            sys.exit(f"unknown service {service!r}; choose from {', '.join(MIGRATED)}")
        engine = create_db_engine(settings.db_url(service), pool_size=1)
        upgrade(service, engine)
        engine.dispose()
        print(f"{service}: database at head")


if __name__ == "__main__":
    main(sys.argv[1:])
