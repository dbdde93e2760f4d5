"""The projector: reads the order events in the store's order and keeps the projections.

Each batch is one transaction on the read side's database: lock the checkpoint, read the events
after it, apply them, move the checkpoint. A crash anywhere leaves either the whole batch or
none of it, so the projector resumes without skipping or double-applying an event; a second
projector running at the same time waits for the lock and then reads after the new checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

from sqlalchemy import Engine, delete, event, select
from sqlmodel import Session, col

from cloudmart import tracing
from cloudmart.contracts.events import EventType, StoredEvent
from cloudmart.contracts.orders import OrderStatus
from cloudmart.contracts.ratings import ProductRated
from cloudmart.contracts.returns import RETURNS_STREAM_PREFIX, ReturnEvent
from cloudmart.contracts.steps import CatalogEntry, Undo
from services.database import get_for_update, read_only, transaction
from services.event_store.aggregate import STATUS_AFTER
from services.event_store.store import EventStore
from services.readmodel.customers import (
    CUSTOMER_EVENTS,
    ProfileReader,
    apply_customer_event,
    apply_order_event,
    revoke_returned_points,
)
from services.readmodel.models import (
    Checkpoint,
    CustomerDay,
    CustomerStats,
    FailureCount,
    OrderSummary,
    ProductRatingRow,
    ProductSales,
    ProductSearch,
    UserCategory,
    UserOrder,
    UserView,
)
from services.readmodel.ratings import Tally

NAME = "projections"
PROJECTION_TABLES = (
    OrderSummary,
    ProductSales,
    FailureCount,
    ProductSearch,
    ProductRatingRow,
    UserView,
    UserOrder,
    UserCategory,
    CustomerStats,
    CustomerDay,
)
Catalog = Callable[[], list[CatalogEntry]]
HELD = "projector-held-rows"
POSITION = select(col(Checkpoint.position)).where(col(Checkpoint.name) == NAME)


class Projector:
    def __init__(
        self,
        store: EventStore,
        engine: Engine,
        catalog: Catalog,
        profiles: ProfileReader | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self._catalog = catalog
        self.profiles = profiles
        """Opens customers' sealed profiles for the UserView; None shows no profiles at all."""
        self._reads = read_only(engine)
        if engine.dialect.name == "sqlite":
            # An erased customer's blanked profile is overwritten, not left in a free page.
            event.listen(engine, "connect", _secure_delete)

    def run_once(self, limit: int = 500) -> int:
        """Project the next batch of events; returns how many there were."""
        if self.store.head() <= self.position():
            # Caught up: two reads instead of a write transaction (the worker asks 20 times a
            # second, busy or idle).
            return 0
        with tracing.span("projector.batch"), transaction(self.engine) as session:
            _hold_rows(session)
            checkpoint = _locked_checkpoint(session)
            projected, erased = self._project(session, checkpoint, limit, live=True)
        if erased:
            self.forget_freed_pages()
        return projected

    def position(self) -> int:
        """The last event projected (0 before the first)."""
        with self._reads.connect() as connection:
            return connection.scalar(POSITION) or 0

    def catch_up(self, limit: int = 500) -> int:
        total = 0
        while projected := self.run_once(limit):
            total += projected
        return total

    def rebuild(self, batch: int = 2000) -> int:
        """Throw every projection away and project all the events again; returns how many.

        One transaction, holding the checkpoint's lock: readers see the old tables until the
        new ones are complete, and a projector running meanwhile waits, then goes on from
        the rebuilt position.
        """
        with transaction(self.engine) as session:
            _hold_rows(session)
            checkpoint = _locked_checkpoint(session)
            for table in PROJECTION_TABLES:
                session.execute(delete(table))
            checkpoint.position, checkpoint.lag_ms = 0, None
            _sync_catalog(session, self._catalog)
            total = 0
            while projected := self._project(session, checkpoint, batch, live=False)[0]:
                total += projected
                session.flush()
                session.expunge_all()  # keep memory flat over a long history
                session.info[HELD].clear()
                checkpoint = _locked_checkpoint(session)
        self.forget_freed_pages()  # the old tables' rows, profiles among them
        return total

    def forget_freed_pages(self) -> None:
        """SQLite: move the write-ahead log, which still holds pages as they were before a
        profile was blanked, into the database file and empty it. (PostgreSQL keeps an updated
        row's old version until VACUUM reclaims it: docs/events-and-cqrs.md.)"""
        if self.engine.dialect.name != "sqlite":
            return
        connection = self.engine.raw_connection()  # no BEGIN: a checkpoint runs outside one
        try:
            cursor = connection.cursor()
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            cursor.close()
        finally:
            connection.close()

    def _project(
        self, session: Session, checkpoint: Checkpoint, limit: int, *, live: bool
    ) -> tuple[int, bool]:
        """Apply the next ``limit`` events; returns how many, and whether a customer among them
        was erased."""
        events = self.store.read_after(checkpoint.position, limit)
        # The events of one append are consecutive in the store (appends are serialised), so
        # each run of one traceparent is one append's: its projection joins that order's trace.
        # A rebuild's would land in traces long closed: it joins none.
        for traceparent, run in groupby(events, key=_traceparent if live else lambda _: None):
            with tracing.continued(traceparent, "projector.project") as span:
                appended = list(run)
                if span is not None:
                    span.set_attributes(
                        {
                            "cloudmart.aggregate_id": appended[0].aggregate_id,
                            "cloudmart.events": len(appended),
                            "cloudmart.event_types": [e.event_type for e in appended],
                        }
                    )
                for stored in appended:
                    _apply(session, stored, self._catalog, self.profiles)
        if events:
            now = datetime.now(UTC)
            checkpoint.position = events[-1].position
            checkpoint.updated_at = now
            # The lag is the live path's: a rebuild's old events say nothing about it.
            lag = (now - events[-1].recorded_at).total_seconds() * 1000
            checkpoint.lag_ms = lag if live else None
        return len(events), any(e.event_type == EventType.CUSTOMER_ERASED for e in events)

    def sync_catalog(self) -> None:
        """Bring in products the catalog has and the search does not (and their static facts)."""
        with transaction(self.engine) as session:
            _sync_catalog(session, self._catalog)


def _traceparent(stored: StoredEvent) -> str | None:
    return stored.traceparent


def _hold_rows(session: Session) -> None:
    """Keep every row the transaction loads or adds until it ends. The session's identity map
    holds a clean row weakly: once flushed, a row nothing else refers to is dropped, and the
    next event's ``session.get`` of it was a SELECT (and an autoflush) again, several per
    event. A batch touches a few hundred rows at most; a rebuild lets go at each batch."""
    held: list[object] = []
    session.info[HELD] = held
    event.listen(session, "loaded_as_persistent", lambda _session, row: held.append(row))
    event.listen(session, "pending_to_persistent", lambda _session, row: held.append(row))


def _secure_delete(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _locked_checkpoint(session: Session) -> Checkpoint:
    checkpoint = get_for_update(session, Checkpoint, NAME)
    if checkpoint is None:
        checkpoint = Checkpoint(name=NAME)
        session.add(checkpoint)
    return checkpoint


def _sync_catalog(session: Session, catalog: Catalog) -> None:
    for entry in catalog():
        row = session.get(ProductSearch, entry.sku)
        if row is None:
            row = ProductSearch(
                sku=entry.sku,
                name=entry.name,
                category=entry.category,
                price_cents=entry.price_cents,
            )
            session.add(row)
        row.name, row.category, row.price_cents = entry.name, entry.category, entry.price_cents
        row.received = entry.received
        row.stock_on_hand = row.received - row.reserved - row.sold


def _product(session: Session, sku: str, catalog: Catalog) -> ProductSearch:
    row = session.get(ProductSearch, sku)
    if row is None:  # a product listed after the last sync
        _sync_catalog(session, catalog)
        session.flush()
        row = session.get(ProductSearch, sku)
    if row is None:
        raise LookupError(f"sku {sku} is in the events but not in the catalog")
    return row


def _move_stock(
    session: Session, lines: list[dict[str, Any]], catalog: Catalog, *, reserved: int, sold: int
) -> None:
    """Apply ``reserved`` and ``sold`` (per unit: +1, -1 or 0) to every line's product."""
    for line in lines:
        row = _product(session, line["sku"], catalog)
        row.reserved += reserved * line["quantity"]
        row.sold += sold * line["quantity"]
        row.stock_on_hand = row.received - row.reserved - row.sold


def _sales(session: Session, sku: str) -> ProductSales:
    row = session.get(ProductSales, sku)
    if row is None:
        row = ProductSales(sku=sku)
        session.add(row)
    return row


def _rate(session: Session, rated: ProductRated, catalog: Catalog) -> None:
    """The customer's rating supersedes their earlier one of the product, if any."""
    product = _product(session, rated.sku, catalog)
    current = session.get(ProductRatingRow, (rated.sku, rated.customer_id))
    previous = current.stars if current is not None else None
    if current is None:
        current = ProductRatingRow(sku=rated.sku, customer_id=rated.customer_id, stars=rated.stars)
        session.add(current)
    current.stars = rated.stars
    tally = Tally(product.rating_count, product.rating_total).rate(rated.stars, previous)
    product.rating_count, product.rating_total = tally.count, tally.total
    product.rating_average = tally.average


def _apply(
    session: Session, event: StoredEvent, catalog: Catalog, profiles: ProfileReader | None
) -> None:
    if event.event_type in CUSTOMER_EVENTS:  # a customer's stream
        apply_customer_event(session, event, profiles)
        return
    if event.event_type == EventType.PRODUCT_RATED:  # a product's stream, not an order's
        _rate(session, ProductRated.model_validate(event.data), catalog)
        return
    if event.aggregate_id.startswith(RETURNS_STREAM_PREFIX):  # an order's returns stream
        _apply_return(session, event, catalog)
        return
    _apply_to_orders(session, event, catalog)
    apply_order_event(session, event, lambda sku: _product(session, sku, catalog).category)


def _apply_return(session: Session, event: StoredEvent, catalog: Catalog) -> None:
    """A return's refund shows on its order: PARTIALLY_RETURNED, or RETURNED once the order's
    returns have refunded its whole charge (docs/returns.md); restocked units are on hand
    again in the search (and taken out again when a refused refund un-restocks them); revoked
    points leave the customer's view. Its other events change nothing here (``GET
    /returns/{id}`` reads them from the store)."""
    data = event.data
    match event.event_type:
        case ReturnEvent.STOCK_RESTOCKED:
            _move_stock(session, data["lines"], catalog, reserved=0, sold=-1)
        case ReturnEvent.STOCK_UNRESTOCKED:
            _move_stock(session, data["unrestocked"], catalog, reserved=0, sold=+1)
        case ReturnEvent.POINTS_REVOKED:
            revoke_returned_points(session, data["order_id"], data["points"], event.occurred_at)
        case ReturnEvent.RETURN_REFUNDED:
            _returned(session, event)


def _returned(session: Session, event: StoredEvent) -> None:
    data = event.data
    summary = session.get(OrderSummary, data["order_id"])
    if summary is None:
        return
    whole = data["order_refunded_cents"] >= data["charged_cents"]
    summary.status = OrderStatus.RETURNED if whole else OrderStatus.PARTIALLY_RETURNED
    summary.updated_at = event.occurred_at


def _apply_to_orders(session: Session, event: StoredEvent, catalog: Catalog) -> None:
    """The order summaries, sales, failures and stock; event types it does not know (another
    stream's, or a newer saga's) change nothing but the order's ``updated_at``."""
    data = event.data
    summary = session.get(OrderSummary, event.aggregate_id)
    match event.event_type:
        case EventType.ORDER_PLACED:
            summary = OrderSummary(
                order_id=event.aggregate_id,
                customer_id=data["customer_id"],
                status=STATUS_AFTER[event.event_type],
                item_count=sum(item["quantity"] for item in data["items"]),
                created_at=event.occurred_at,
                updated_at=event.occurred_at,
            )
            session.add(summary)
            return
        case EventType.INVENTORY_RESERVED:
            _move_stock(session, data["lines"], catalog, reserved=+1, sold=0)
            if summary is not None:
                summary.total_cents = data["total_cents"]
        case EventType.INVENTORY_RELEASED if data["outcome"] == Undo.UNDONE:
            # A cancel can interrupt the reservation after inventory committed it but before
            # the saga heard back (no InventoryReserved): then the release undoes a reservation
            # these projections never counted, and leaves their stock as it is.
            if summary is not None and summary.total_cents is not None:
                _move_stock(session, data["lines"], catalog, reserved=-1, sold=0)
            for line in data["lines"]:
                _sales(session, line["sku"]).units_released += line["quantity"]
        case EventType.INVENTORY_COMMITTED:
            _move_stock(session, data["lines"], catalog, reserved=-1, sold=+1)
            for line in data["lines"]:
                sales = _sales(session, line["sku"])
                sales.units_sold += line["quantity"]
                sales.revenue_cents += line["quantity"] * line["unit_price_cents"]
        case EventType.ORDER_FAILED:
            counted = session.get(FailureCount, data["type"])
            if counted is None:
                counted = FailureCount(failure_type=data["type"])
                session.add(counted)
            counted.orders += 1
            if summary is not None:
                summary.failure_type, summary.failure_message = data["type"], data["message"][:500]
        case EventType.ORDER_CANCELLED if summary is not None:
            summary.cancel_reason = data["reason"]
    if summary is not None:
        summary.status = STATUS_AFTER.get(event.event_type, summary.status)
        summary.updated_at = event.occurred_at
