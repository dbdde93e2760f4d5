"""Build each service from the settings: its own engine on its own database."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine

from cloudmart.settings import Settings
from services.activity.store import ActivityStore
from services.audit.log import AuditLog
from services.choreography.consumer import Consumer
from services.choreography.tables import ChoreographyTables
from services.customers import CustomersService
from services.customers.sealing import ProfileSealing
from services.database import create_db_engine
from services.event_store.store import EventStore
from services.inventory import InventoryService
from services.inventory.catalog import DEMO_CATALOG
from services.inventory.models import CHOREOGRAPHY as INVENTORY_CHOREOGRAPHY
from services.inventory.returns import InventoryReturns
from services.loyalty.models import CHOREOGRAPHY as LOYALTY_CHOREOGRAPHY
from services.loyalty.returns import LoyaltyReturns
from services.loyalty.service import LoyaltyService
from services.migrations import upgrade
from services.payment import PaymentProvider, PaymentService, SimulatedProvider
from services.payment.models import CHOREOGRAPHY as PAYMENT_CHOREOGRAPHY
from services.payment.returns import PaymentReturns
from services.readmodel.projector import Projector
from services.shipping import ShippingService
from services.shipping.erasure import AddressEraser, overwrite_deleted
from services.shipping.models import CHOREOGRAPHY as SHIPPING_CHOREOGRAPHY
from services.shipping.returns import ShippingReturns

Service = (
    EventStore
    | CustomersService
    | InventoryService
    | PaymentService
    | ShippingService
    | Projector
    | LoyaltyService
    | AddressEraser
    | Consumer
)
SERVICE_NAMES: dict[type, str] = {
    EventStore: "event_store",
    CustomersService: "customers",
    InventoryService: "inventory",
    PaymentService: "payment",
    ShippingService: "shipping",
    Projector: "readmodel",
    LoyaltyService: "loyalty",
    AddressEraser: "shipping",
    ActivityStore: "activity",
    AuditLog: "audit",
}
"""Each kind of service, and the database (and migration history) it owns (a choreography
``Consumer``'s is its service's: ``CHOREOGRAPHY``)."""

CHOREOGRAPHY: dict[str, tuple[str, ChoreographyTables]] = {
    "shipping-returns": ("shipping", SHIPPING_CHOREOGRAPHY),
    "inventory-returns": ("inventory", INVENTORY_CHOREOGRAPHY),
    "payment-returns": ("payment", PAYMENT_CHOREOGRAPHY),
    "loyalty-returns": ("loyalty", LOYALTY_CHOREOGRAPHY),
}
"""The return saga's consumers (worker roles): each one's database and choreography tables."""

SUBSCRIBER_POOL = 2
"""Subscribers (projector, loyalty, shipping's eraser, the return consumers) work one batch at a
time: a small pool is plenty."""


def _engine(settings: Settings, database: str, pool_size: int | None) -> Engine:
    return create_db_engine(
        settings.db_url(database), pool_size=pool_size or settings.activity_threads
    )


def build_event_store(settings: Settings, *, pool_size: int | None = None) -> EventStore:
    return EventStore(_engine(settings, "event_store", pool_size))


def build_customers(settings: Settings, *, pool_size: int | None = None) -> CustomersService:
    """Its own database, and the event store, where it appends the customers' events."""
    return CustomersService(
        _engine(settings, "customers", pool_size), build_event_store(settings, pool_size=pool_size)
    )


def build_profile_reader(settings: Settings) -> ProfileSealing:
    """Opens customers' sealed profiles (``open(customer_id, sealed)``, None once erased) with
    the keys in the customers database: for the read side, which never writes there."""
    return ProfileSealing(_engine(settings, "customers", SUBSCRIBER_POOL))


def build_inventory(settings: Settings, *, pool_size: int | None = None) -> InventoryService:
    return InventoryService(_engine(settings, "inventory", pool_size))


def build_payment(
    settings: Settings,
    *,
    pool_size: int | None = None,
    provider: PaymentProvider | None = None,
) -> PaymentService:
    if provider is None:
        provider = SimulatedProvider(_engine(settings, "payment_provider", pool_size))
    return PaymentService(_engine(settings, "payment", pool_size), provider)


def build_shipping(settings: Settings, *, pool_size: int | None = None) -> ShippingService:
    engine = overwrite_deleted(_engine(settings, "shipping", pool_size))  # erasure: no copies
    return ShippingService(engine, settings.shipping_countries)


def build_projector(settings: Settings) -> Projector:
    """Reads the events, inventory's catalog and (to open profiles) the customers' keys; writes
    only the read side's database."""
    return Projector(
        build_event_store(settings, pool_size=SUBSCRIBER_POOL),
        _engine(settings, "readmodel", SUBSCRIBER_POOL),
        build_inventory(settings, pool_size=SUBSCRIBER_POOL).catalog,
        profiles=build_profile_reader(settings),  # the UserView's profiles
    )


def build_loyalty(settings: Settings) -> LoyaltyService:
    return LoyaltyService(
        _engine(settings, "loyalty", SUBSCRIBER_POOL),
        build_event_store(settings, pool_size=SUBSCRIBER_POOL),
        snapshot_every=settings.snapshot_every,
    )


def build_shipping_eraser(settings: Settings) -> AddressEraser:
    """Shipping's follower of the events: blanks erased customers' addresses in shipping's
    database (the only one it writes)."""
    return AddressEraser(
        overwrite_deleted(_engine(settings, "shipping", SUBSCRIBER_POOL)),
        build_event_store(settings, pool_size=SUBSCRIBER_POOL),
    )


def _consumer(settings: Settings, role: str, handler: object, engine: Engine) -> Consumer:
    _, tables = CHOREOGRAPHY[role]
    return Consumer(
        engine,
        build_event_store(settings, pool_size=SUBSCRIBER_POOL),
        tables,
        handler,  # type: ignore[arg-type]
        max_attempts=settings.choreography_attempts,
    )


def build_shipping_returns(settings: Settings) -> Consumer:
    """Shipping's return consumer: labels returns, sends rejected parcels back."""
    engine = overwrite_deleted(_engine(settings, "shipping", SUBSCRIBER_POOL))
    return _consumer(settings, "shipping-returns", ShippingReturns(), engine)


def build_inventory_returns(settings: Settings) -> Consumer:
    """Inventory's return consumer: restocks accepted returns, un-restocks refused refunds."""
    engine = _engine(settings, "inventory", SUBSCRIBER_POOL)
    return _consumer(settings, "inventory-returns", InventoryReturns(), engine)


def build_payment_returns(settings: Settings, provider: PaymentProvider | None = None) -> Consumer:
    """Payment's return consumer: refunds restocked returns through the provider."""
    if provider is None:
        provider = SimulatedProvider(_engine(settings, "payment_provider", SUBSCRIBER_POOL))
    engine = _engine(settings, "payment", SUBSCRIBER_POOL)
    return _consumer(settings, "payment-returns", PaymentReturns(provider), engine)


def build_loyalty_returns(settings: Settings) -> Consumer:
    """Loyalty's return consumer: revokes refunded lines' points."""
    engine = _engine(settings, "loyalty", SUBSCRIBER_POOL)
    loyalty = LoyaltyService(engine, build_event_store(settings, pool_size=SUBSCRIBER_POOL))
    return _consumer(settings, "loyalty-returns", LoyaltyReturns(loyalty), engine)


def build_activity(settings: Settings) -> ActivityStore:
    """The API's: it records customers' actions (not a worker's role)."""
    return ActivityStore(_engine(settings, "activity", SUBSCRIBER_POOL))


def build_audit(settings: Settings) -> AuditLog:
    """The compliance audit log: written by the API and operator commands, not a worker."""
    return AuditLog(_engine(settings, "audit", SUBSCRIBER_POOL))


def prepare(service: Service, settings: Settings) -> None:
    """Migrate the service's database to head; seed the demo catalog into inventory (both
    idempotent). The simulated provider, a stand-in for an outside system, makes its own table."""
    if isinstance(service, Consumer):
        upgrade(CHOREOGRAPHY[service.name][0], service.engine)
        if isinstance(service.handler, PaymentReturns) and isinstance(
            service.handler.provider, SimulatedProvider
        ):
            service.handler.provider.create_schema()
        return
    upgrade(SERVICE_NAMES[type(service)], service.engine)
    if isinstance(service, CustomersService):
        upgrade("event_store", service.store.engine)  # where its events go
        service.flush_pending()  # what a crash left between a commit and its append
    if isinstance(service, InventoryService) and settings.seed_demo_catalog:
        service.seed(DEMO_CATALOG)
    if isinstance(service, PaymentService) and isinstance(service.provider, SimulatedProvider):
        service.provider.create_schema()


@dataclass
class Services:
    """The services one process hosts; a split deployment hosts one of them per process."""

    event_store: EventStore | None = None
    customers: CustomersService | None = None
    inventory: InventoryService | None = None
    payment: PaymentService | None = None
    shipping: ShippingService | None = None
    projector: Projector | None = None
    loyalty: LoyaltyService | None = None
    shipping_eraser: AddressEraser | None = None
    shipping_returns: Consumer | None = None
    inventory_returns: Consumer | None = None
    payment_returns: Consumer | None = None
    loyalty_returns: Consumer | None = None

    @property
    def consumers(self) -> list[Consumer]:
        """The return saga's consumers it hosts (services/choreography)."""
        hosted = (
            self.shipping_returns,
            self.inventory_returns,
            self.payment_returns,
            self.loyalty_returns,
        )
        return [c for c in hosted if c is not None]

    def hosted(self) -> list[Service]:
        hosted = (
            self.event_store,
            self.customers,
            self.inventory,
            self.payment,
            self.shipping,
            self.projector,
            self.loyalty,
            self.shipping_eraser,
            *self.consumers,
        )
        return [s for s in hosted if s is not None]

    def dispose(self) -> None:
        for service in self.hosted():
            service.engine.dispose()
        if self.payment and isinstance(self.payment.provider, SimulatedProvider):
            self.payment.provider.engine.dispose()
        for subscriber in (
            self.customers,
            self.projector,
            self.loyalty,
            self.shipping_eraser,
            *self.consumers,
        ):
            if subscriber is not None:
                subscriber.store.engine.dispose()
        for consumer in self.consumers:
            if isinstance(consumer.handler, PaymentReturns) and isinstance(
                consumer.handler.provider, SimulatedProvider
            ):
                consumer.handler.provider.engine.dispose()
        if self.projector and isinstance(self.projector.profiles, ProfileSealing):
            self.projector.profiles.engine.dispose()


BUILDERS = {
    "event_store": build_event_store,
    "customers": build_customers,
    "inventory": build_inventory,
    "payment": build_payment,
    "shipping": build_shipping,
    "projector": build_projector,
    "loyalty": build_loyalty,
    "shipping-eraser": build_shipping_eraser,
    "shipping-returns": build_shipping_returns,
    "inventory-returns": build_inventory_returns,
    "payment-returns": build_payment_returns,
    "loyalty-returns": build_loyalty_returns,
}


def open_services(settings: Settings, names: Iterable[str]) -> Services:
    """The services of the roles ``names`` (a worker's role ``shipping-eraser`` is the field
    ``shipping_eraser``)."""
    built = {name.replace("-", "_"): BUILDERS[name](settings) for name in set(names)}  # type: ignore[operator]
    return Services(**built)
