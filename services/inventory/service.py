"""Inventory: reserve stock for an order, release it, or commit it as sold.

Every operation is one database transaction keyed by the order id, so a retried call has the
effect of one call, and stock moves only by conditional updates that can never drive it below
zero, however many orders race for the last unit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from cloudmart.contracts.failures import (
    AlreadyCompensated,
    InvalidTransition,
    OutOfStock,
    UnknownSku,
)
from cloudmart.contracts.orders import OrderItem
from cloudmart.contracts.steps import (
    CatalogEntry,
    CompensationResult,
    ProductView,
    Reservation,
    ReservedLine,
    Undo,
)
from services.database import (
    get_for_update,
    get_or_tombstone,
    insert_if_absent,
    read_only,
    transaction,
    utcnow,
)
from services.inventory.catalog import ProductSeed
from services.inventory.models import Product, ReservationLine, ReservationStatus
from services.inventory.models import Reservation as ReservationRow


class InventoryService:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def seed(self, products: Iterable[ProductSeed]) -> int:
        """Add the products that do not exist yet; never touches the stock of existing ones."""
        rows = [
            {
                "sku": p.sku,
                "name": p.name,
                "category": p.category,
                "price_cents": p.price_cents,
                "stock_on_hand": p.stock,
                "reserved": 0,
                "sold": 0,
                "received": p.stock,
            }
            for p in products
        ]
        with transaction(self.engine) as session:
            return insert_if_absent(session, Product, rows)

    def list_products(self) -> list[ProductView]:
        with Session(read_only(self.engine)) as session:
            products = session.exec(select(Product).order_by(Product.category, Product.sku)).all()
            return [
                ProductView(
                    sku=p.sku,
                    name=p.name,
                    category=p.category,
                    price_cents=p.price_cents,
                    stock_on_hand=p.stock_on_hand,
                    reserved=p.reserved,
                )
                for p in products
            ]

    def catalog(self) -> list[CatalogEntry]:
        with Session(read_only(self.engine)) as session:
            products = session.exec(select(Product).order_by(Product.sku)).all()
            return [
                CatalogEntry(
                    sku=p.sku,
                    name=p.name,
                    category=p.category,
                    price_cents=p.price_cents,
                    received=p.received,
                )
                for p in products
            ]

    def reserve(self, order_id: str, items: Sequence[OrderItem]) -> Reservation:
        """Hold every line of the order, or none of them."""
        with transaction(self.engine) as session:
            existing = get_for_update(session, ReservationRow, order_id)
            if existing is not None:
                if existing.status in (ReservationStatus.RESERVED, ReservationStatus.COMMITTED):
                    return _reservation(session, existing)
                raise AlreadyCompensated(
                    f"inventory for order {order_id} was already released; not reserving again"
                )
            # The reservation row goes first: a concurrent attempt for the same order blocks on
            # its key (PostgreSQL) or on the database lock (SQLite) instead of touching stock.
            reservation = ReservationRow(order_id=order_id, status=ReservationStatus.RESERVED)
            session.add(reservation)
            session.flush()
            total = 0
            # A fixed lock order (by sku) keeps two multi-line orders from deadlocking.
            for item in sorted(items, key=lambda i: i.sku):
                price = _take_stock(session, item)
                session.add(
                    ReservationLine(
                        order_id=order_id,
                        sku=item.sku,
                        quantity=item.quantity,
                        unit_price_cents=price,
                    )
                )
                total += price * item.quantity
            reservation.total_cents = total
            session.flush()
            return _reservation(session, reservation)

    def release(self, order_id: str, reason: str) -> CompensationResult:
        """Give the order's reserved stock back. Before a reservation, leave a tombstone."""
        with transaction(self.engine) as session:
            row, is_new_tombstone = get_or_tombstone(
                session,
                ReservationRow,
                order_id,
                {
                    "order_id": order_id,
                    "status": ReservationStatus.TOMBSTONE,
                    "total_cents": 0,
                    "reason": reason[:500],
                },
            )
            match row.status:
                case ReservationStatus.TOMBSTONE:
                    detail = "nothing was reserved" if is_new_tombstone else "tombstone exists"
                    return CompensationResult(outcome=Undo.NOTHING_TO_UNDO, detail=detail)
                case ReservationStatus.RELEASED:
                    return CompensationResult(outcome=Undo.ALREADY_UNDONE)
                case ReservationStatus.COMMITTED:
                    raise InvalidTransition(
                        f"order {order_id} is sold; its stock cannot be released"
                    )
            lines = _lines(session, order_id)
            for line in lines:
                session.execute(
                    update(Product)
                    .where(col(Product.sku) == line.sku)
                    .values(
                        stock_on_hand=Product.stock_on_hand + line.quantity,
                        reserved=Product.reserved - line.quantity,
                    )
                )
            row.status = ReservationStatus.RELEASED
            row.reason = reason[:500]
            row.updated_at = utcnow()
            units = sum(line.quantity for line in lines)
            return CompensationResult(
                outcome=Undo.UNDONE,
                detail=f"released {units} unit(s)",
                lines=_contract_lines(lines),
            )

    def commit(self, order_id: str) -> Reservation:
        """Turn the order's reservation into a sale."""
        with transaction(self.engine) as session:
            row = get_for_update(session, ReservationRow, order_id)
            if row is None or row.status in (
                ReservationStatus.RELEASED,
                ReservationStatus.TOMBSTONE,
            ):
                raise InvalidTransition(f"order {order_id} has no reservation to commit")
            if row.status == ReservationStatus.RESERVED:
                for line in _lines(session, order_id):
                    session.execute(
                        update(Product)
                        .where(col(Product.sku) == line.sku)
                        .values(
                            reserved=Product.reserved - line.quantity,
                            sold=Product.sold + line.quantity,
                        )
                    )
                row.status = ReservationStatus.COMMITTED
                row.updated_at = utcnow()
            return _reservation(session, row)


def _take_stock(session: Session, item: OrderItem) -> int:
    """Move the units from on hand to reserved if they are all there; returns the unit price."""
    taken = session.execute(
        update(Product)
        .where(col(Product.sku) == item.sku, col(Product.stock_on_hand) >= item.quantity)
        .values(
            stock_on_hand=Product.stock_on_hand - item.quantity,
            reserved=Product.reserved + item.quantity,
        )
        .returning(col(Product.price_cents))
    ).first()
    if taken is not None:
        return int(taken[0])
    product = session.get(Product, item.sku)
    if product is None:
        raise UnknownSku(f"unknown sku {item.sku!r}")
    raise OutOfStock(f"{item.sku}: {item.quantity} requested, {product.stock_on_hand} available")


def _lines(session: Session, order_id: str) -> Sequence[ReservationLine]:
    statement = (
        select(ReservationLine)
        .where(ReservationLine.order_id == order_id)
        .order_by(col(ReservationLine.sku))
    )
    return session.exec(statement).all()


def _reservation(session: Session, row: ReservationRow) -> Reservation:
    return Reservation(
        order_id=row.order_id,
        total_cents=row.total_cents,
        lines=_contract_lines(_lines(session, row.order_id)),
    )


def _contract_lines(lines: Sequence[ReservationLine]) -> list[ReservedLine]:
    return [
        ReservedLine(sku=line.sku, quantity=line.quantity, unit_price_cents=line.unit_price_cents)
        for line in lines
    ]
