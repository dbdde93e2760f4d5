"""Shipping's table: one shipment per order."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from services.database import UtcDateTime, utcnow


class ShippingTable(SQLModel, registry=registry()):
    """Base of shipping's tables: their own metadata, so they live only in shipping's database."""


class ShipmentStatus(StrEnum):
    CREATED = "CREATED"
    CANCELLED = "CANCELLED"
    TOMBSTONE = "TOMBSTONE"
    """Cancelled before any shipment existed: refuses a late shipment for the order."""


class Shipment(ShippingTable, table=True):
    __tablename__ = "shipments"

    order_id: str = Field(primary_key=True, max_length=64)
    status: str = Field(max_length=16)
    tracking_number: str | None = Field(default=None, unique=True, max_length=32)
    country: str | None = Field(default=None, max_length=2)
    address: dict[str, str | None] | None = Field(default=None, sa_type=JSON)
    reason: str | None = Field(default=None, max_length=500)
    """Why it was cancelled (the compensation's reason)."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
