"""Each service's schema comes from its migrations, and they match its models exactly."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect, text

from cloudmart.settings import Settings
from services.activity.models import ActivityTable
from services.audit.models import AuditTable
from services.customers.models import CustomersTable
from services.database import create_db_engine
from services.event_store.models import EventStoreTable
from services.inventory.models import InventoryTable
from services.loyalty.models import LoyaltyTable
from services.migrations import MIGRATED, alembic_config, upgrade
from services.payment.models import PaymentTable
from services.readmodel.models import ReadModelTable
from services.shipping.models import ShippingTable

METADATA: dict[str, MetaData] = {
    "event_store": EventStoreTable.metadata,
    "customers": CustomersTable.metadata,
    "readmodel": ReadModelTable.metadata,
    "loyalty": LoyaltyTable.metadata,
    "inventory": InventoryTable.metadata,
    "payment": PaymentTable.metadata,
    "shipping": ShippingTable.metadata,
    "activity": ActivityTable.metadata,
    "audit": AuditTable.metadata,
}


@pytest.mark.parametrize("service", sorted(METADATA))
def test_migrations_build_exactly_the_models_schema(settings: Settings, service: str) -> None:
    engine = create_db_engine(settings.db_url(service), pool_size=1)
    upgrade(service, engine)
    with engine.connect() as connection:
        drift = compare_metadata(MigrationContext.configure(connection), METADATA[service])
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    assert drift == [], "a model changed without a migration (alembic revision --autogenerate)"
    assert version == ScriptDirectory.from_config(alembic_config(service)).get_current_head()


def test_payment_upgrades_from_its_first_schema_keeping_its_charges(settings: Settings) -> None:
    """Saga v2's fraud_checks table arrives by migration on a database that already has data."""
    engine = create_db_engine(settings.db_url("payment"), pool_size=1)
    upgrade("payment", engine, revision="0001")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO charges (order_id, customer_id, amount_cents, status, payment_token,"
                " created_at, updated_at) VALUES ('o-1', 'c-1', 500, 'CAPTURED', 'tok_ok',"
                " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    upgrade("payment", engine)
    with engine.connect() as connection:
        charges = connection.execute(text("SELECT order_id FROM charges")).scalars().all()
        checks = connection.execute(text("SELECT count(*) FROM fraud_checks")).scalar()
    engine.dispose()
    assert charges == ["o-1"] and checks == 0


def test_every_migrated_database_is_covered() -> None:
    assert set(METADATA) == set(MIGRATED)


@pytest.mark.parametrize("service", sorted(METADATA))
def test_replicas_migrating_at_once_are_safe(settings: Settings, service: str) -> None:
    engine = create_db_engine(settings.db_url(service), pool_size=4)
    with ThreadPoolExecutor(4) as pool:
        for outcome in [pool.submit(upgrade, service, engine) for _ in range(4)]:
            outcome.result(30)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert tables == {*METADATA[service].tables, "alembic_version"}
