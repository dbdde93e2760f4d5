"""Inventory's tables. Stock is conserved by a CHECK: on hand + reserved + sold = received."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, CheckConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from services.choreography.tables import choreography_tables
from services.database import UtcDateTime, utcnow


class InventoryTable(SQLModel, registry=registry()):
    """Base of inventory's tables: their own metadata, so they live only in inventory's database."""


class Product(InventoryTable, table=True):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("price_cents > 0", name="price_positive"),
        CheckConstraint("stock_on_hand >= 0", name="stock_not_negative"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("sold >= 0", name="sold_not_negative"),
        CheckConstraint("stock_on_hand + reserved + sold = received", name="stock_is_conserved"),
    )

    sku: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    category: str = Field(max_length=64, index=True)
    price_cents: int
    stock_on_hand: int
    """Units free to reserve."""
    reserved: int = 0
    """Units held by orders in flight."""
    sold: int = 0
    """Units of completed orders."""
    received: int
    """Every unit ever put into stock."""


class ReservationStatus(StrEnum):
    RESERVED = "RESERVED"
    COMMITTED = "COMMITTED"
    RELEASED = "RELEASED"
    TOMBSTONE = "TOMBSTONE"
    """Released before anything was reserved: refuses a late reservation for the order."""


class Reservation(InventoryTable, table=True):
    __tablename__ = "reservations"

    order_id: str = Field(primary_key=True, max_length=64)
    status: str = Field(max_length=16)
    total_cents: int = 0
    reason: str | None = Field(default=None, max_length=500)
    """Why it was released (the compensation's reason)."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)


class ReservationLine(InventoryTable, table=True):
    __tablename__ = "reservation_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    order_id: str = Field(foreign_key="reservations.order_id", primary_key=True, max_length=64)
    sku: str = Field(foreign_key="products.sku", primary_key=True, max_length=64)
    quantity: int
    unit_price_cents: int


# --- returns (services/inventory/returns.py): a choreographed saga's step ---------------------

CHOREOGRAPHY = choreography_tables(InventoryTable.metadata)
"""Inventory's return consumer's checkpoint, inbox, outbox and dead letters
(services/choreography)."""


class ReturnRestock(InventoryTable, table=True):
    """The units a return put back into stock, and those taken out again when its refund was
    refused for good (``unrestocked``: what stock there still was to take)."""

    __tablename__ = "return_restocks"

    return_id: str = Field(primary_key=True, max_length=36)
    order_id: str = Field(index=True, max_length=64)
    lines: list[dict[str, int | str]] = Field(sa_type=JSON)
    unrestocked: list[dict[str, int | str]] | None = Field(default=None, sa_type=JSON)
    restocked_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    unrestocked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
