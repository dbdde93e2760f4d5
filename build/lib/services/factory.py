"""Build each service from the settings: its own engine on its own database."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cloudmart.settings import Settings
from services.database import create_db_engine
from services.inventory import InventoryService
from services.inventory.catalog import DEMO_CATALOG
from services.migrations import upgrade
from services.payment import PaymentProvider, PaymentService, SimulatedProvider
from services.shipping import ShippingService

Service = InventoryService | PaymentService | ShippingService
SERVICE_NAMES: dict[type, str] = {
    InventoryService: "inventory",
    PaymentService: "payment",
    ShippingService: "shipping",
}


def build_inventory(settings: Settings, *, pool_size: int | None = None) -> InventoryService:
    engine = create_db_engine(
        settings.inventory_db_url, pool_size=pool_size or settings.activity_threads
    )
    return InventoryService(engine)


def build_payment(
    settings: Settings,
    *,
    pool_size: int | None = None,
    provider: PaymentProvider | None = None,
) -> PaymentService:
    size = pool_size or settings.activity_threads
    engine = create_db_engine(settings.payment_db_url, pool_size=size)
    if provider is None:
        provider_engine = create_db_engine(settings.payment_provider_db_url, pool_size=size)
        provider = SimulatedProvider(provider_engine)
    return PaymentService(engine, provider)


def build_shipping(settings: Settings, *, pool_size: int | None = None) -> ShippingService:
    engine = create_db_engine(
        settings.shipping_db_url, pool_size=pool_size or settings.activity_threads
    )
    return ShippingService(engine, settings.shipping_countries)


def prepare(service: Service, settings: Settings) -> None:
    """Migrate the service's database to head; seed the demo catalog into inventory (both
    idempotent). The simulated provider, a stand-in for an outside system, makes its own table."""
    upgrade(SERVICE_NAMES[type(service)], service.engine)
    if isinstance(service, InventoryService) and settings.seed_demo_catalog:
        service.seed(DEMO_CATALOG)
    if isinstance(service, PaymentService) and isinstance(service.provider, SimulatedProvider):
        service.provider.create_schema()


@dataclass
class Services:
    """The services one process hosts; a split deployment hosts one of them per process."""

    inventory: InventoryService | None = None
    payment: PaymentService | None = None
    shipping: ShippingService | None = None

    def hosted(self) -> list[Service]:
        return [s for s in (self.inventory, self.payment, self.shipping) if s is not None]

    def dispose(self) -> None:
        for service in self.hosted():
            service.engine.dispose()
        if self.payment and isinstance(self.payment.provider, SimulatedProvider):
            self.payment.provider.engine.dispose()


def open_services(settings: Settings, names: Iterable[str]) -> Services:
    names = set(names)
    return Services(
        inventory=build_inventory(settings) if "inventory" in names else None,
        payment=build_payment(settings) if "payment" in names else None,
        shipping=build_shipping(settings) if "shipping" in names else None,
    )
