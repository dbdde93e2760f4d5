"""Erasure reaches shipping: the addresses of an erased customer's shipments are blanked.

Shipping keeps each shipment's full address (name, street, city, postcode, country) in
``shipments.address``; an order's events carry only its country. So that ``POST
/customers/{id}/erase`` leaves no store of ours holding that person's address, shipping follows
the event store on its own (its own position, in its own database), as loyalty does:

- ``OrderPlaced`` tells it whose an order is (``order_customers``);
- ``CustomerErased`` that a customer was erased (``erased_customers``).

After each batch, in the same transaction as its position, every shipment of an erased
customer's order whose address is not yet blanked gets ``{"country": <its country>, "erased":
true}``: the country (not personal; shipping's figures may count by it, and it stays in the
``country`` column too) and nothing else. Status, tracking number and reason are left as they
are. The sweep looks at every such order not yet settled, not only the batch's, so a shipment
created after the erasure (for an order placed before it) is blanked by the next batch, which
its own ``ShipmentCreated`` makes sure there is. An order whose shipment row (a shipment, or
the tombstone that refuses one) has been blanked is settled and not looked at again.

Erasing is eventual: within the subscribers' poll interval of the ``CustomerErased`` being
stored (worker.py runs it in the subscribers group). Running again changes nothing.

On SQLite every connection to shipping's database overwrites what it deletes or moves
(``secure_delete``, see ``overwrite_deleted``: without it a page split leaves stale copies of
rows in a page's free space, beyond the eraser's reach) and, after a batch that blanked
something, the write-ahead log (which still holds the pages as they were) is emptied into the
database file, so no copy of the address is left in shipping's files. On PostgreSQL
the old row version stays in the table's pages until ``VACUUM`` reclaims it, and in backups
and WAL archives for as long as those are kept (docs/customers.md).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine, event, select
from sqlmodel import Session, col

from cloudmart.contracts.events import EventType, StoredEvent
from services.database import get_for_update, read_only, transaction, utcnow
from services.event_store.store import EventStore
from services.shipping.models import ErasedCustomer, ErasureSubscription, OrderCustomer, Shipment

SUBSCRIPTION = "address-erasure"
POSITION = select(col(ErasureSubscription.position)).where(
    col(ErasureSubscription.name) == SUBSCRIPTION
)
ERASED = "erased"
"""The key that marks a blanked address: ``{"country": "DE", "erased": true}``."""

log = logging.getLogger(__name__)


def blanked(address: dict[str, Any] | None, country: str | None) -> dict[str, Any]:
    """What an erased customer's shipment keeps of its address: the country, and the mark."""
    kept = country or (address or {}).get("country")
    return {"country": kept, ERASED: True}


def is_blanked(address: dict[str, Any] | None) -> bool:
    return address is None or address.get(ERASED) is True


def overwrite_deleted(engine: Engine) -> Engine:
    """SQLite: every connection of ``engine`` overwrites the bytes of what it deletes, updates
    or moves (``PRAGMA secure_delete``; some builds do by default, the upstream default does
    not). For every engine that writes shipping's database: a row's old copies left in free
    space by the service's own writes would outlive the eraser's blanking."""
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _secure_delete)
    return engine


def _secure_delete(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


class AddressEraser:
    def __init__(self, engine: Engine, store: EventStore) -> None:
        self.engine = engine
        """Shipping's database: the only one it writes."""
        self.store = store
        """The event store it follows (read only)."""
        self._reads = read_only(engine)
        self._wal_to_empty = False

    def run_once(self, limit: int = 500) -> int:
        """Apply the next batch of events, then blank what is due; returns how many events were
        read."""
        if self._wal_to_empty:
            self._empty_wal()
        if self.store.head() <= self.position():
            return 0  # caught up: two reads instead of a write transaction
        with transaction(self.engine) as session:
            subscription = get_for_update(session, ErasureSubscription, SUBSCRIPTION)
            if subscription is None:
                subscription = ErasureSubscription(name=SUBSCRIPTION)
                session.add(subscription)
            events = self.store.read_after(subscription.position, limit)
            for stored in events:
                _learn(session, stored)
            session.flush()
            erased = _blank_due(session)
            if events:
                subscription.position = events[-1].position
        if erased:
            log.info("blanked the addresses of %d shipment(s) of erased customers", erased)
            self._wal_to_empty = True
            self._empty_wal()
        return len(events)

    def catch_up(self) -> int:
        total = 0
        while handled := self.run_once():
            total += handled
        return total

    def position(self) -> int:
        with self._reads.connect() as connection:
            return connection.scalar(POSITION) or 0

    def _empty_wal(self) -> None:
        """SQLite: move the write-ahead log (which still holds the pages with the addresses as
        they were) into the database file and empty it. Busy readers can keep it from finishing:
        then it is tried again on the next run."""
        if self.engine.dialect.name != "sqlite":
            self._wal_to_empty = False
            return
        connection = self.engine.raw_connection()  # no BEGIN: a checkpoint runs outside one
        try:
            cursor = connection.cursor()
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            busy, _, _ = cursor.fetchone()
            cursor.close()
        finally:
            connection.close()
        self._wal_to_empty = bool(busy)


def _learn(session: Session, event: StoredEvent) -> None:
    match event.event_type:
        case EventType.ORDER_PLACED if session.get(OrderCustomer, event.aggregate_id) is None:
            session.add(
                OrderCustomer(order_id=event.aggregate_id, customer_id=event.data["customer_id"])
            )
        case EventType.CUSTOMER_ERASED:
            customer_id = event.data["customer_id"]
            if session.get(ErasedCustomer, customer_id) is None:
                session.add(ErasedCustomer(customer_id=customer_id, erased_at=event.occurred_at))


def _blank_due(session: Session) -> int:
    """Blank the address of every shipment of an erased customer's order not yet settled;
    returns how many addresses it blanked."""
    due = session.scalars(
        select(OrderCustomer)
        .join(ErasedCustomer, col(ErasedCustomer.customer_id) == col(OrderCustomer.customer_id))
        .where(col(OrderCustomer.settled).is_(False))
    ).all()
    if not due:
        return 0
    if session.get_bind().dialect.name == "sqlite":
        # The replaced values' bytes are overwritten, whatever engine it was handed.
        session.connection().exec_driver_sql("PRAGMA secure_delete=ON")
    erased = 0
    for order in due:
        shipment = get_for_update(session, Shipment, order.order_id)
        if shipment is None:
            continue  # not shipped (yet): looked at again after the next batch
        if not is_blanked(shipment.address):
            shipment.address = blanked(shipment.address, shipment.country)
            shipment.updated_at = utcnow()
            erased += 1
        order.settled = True
    return erased
