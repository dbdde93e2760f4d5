"""Shipping's tables: one shipment per order, and what its address eraser keeps."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, BigInteger
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from services.choreography.tables import choreography_tables
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


# --- erasure (services/shipping/erasure.py): what shipping learns from the event store --------


class ErasureSubscription(ShippingTable, table=True):
    """How far the address eraser has read the event store; updated with what it wrote."""

    __tablename__ = "erasure_subscription"

    name: str = Field(primary_key=True, max_length=64)
    position: int = Field(default=0, sa_type=BigInteger)
    """The store's positions are 64-bit: so is a subscriber's place in it."""


class OrderCustomer(ShippingTable, table=True):
    """Whose order it is (from ``OrderPlaced``): the shipment itself does not say."""

    __tablename__ = "order_customers"

    order_id: str = Field(primary_key=True, max_length=64)
    customer_id: str = Field(index=True, max_length=64)
    settled: bool = False
    """The customer was erased and the order's shipment row (a shipment, or the tombstone that
    refuses one) has been seen and blanked: nothing of this order is looked at again."""


class ErasedCustomer(ShippingTable, table=True):
    """A customer erased (``CustomerErased``): their shipments' addresses are blanked."""

    __tablename__ = "erased_customers"

    customer_id: str = Field(primary_key=True, max_length=64)
    erased_at: datetime = Field(sa_type=UtcDateTime)
    """When the customers service recorded the erasure (the event's time)."""


# --- returns (services/shipping/returns.py): a choreographed saga's step ----------------------

CHOREOGRAPHY = choreography_tables(ShippingTable.metadata)
"""Shipping's return consumer's checkpoint, inbox, outbox and dead letters
(services/choreography)."""


class ReturnShipmentStatus(StrEnum):
    LABEL_CREATED = "LABEL_CREATED"
    """The customer has a label to send the parcel to the warehouse with."""
    SENT_BACK = "SENT_BACK"
    """The inspection rejected it: the parcel went back to the customer."""


class ReturnShipment(ShippingTable, table=True):
    """A return's parcel: to the warehouse under ``label``, and back if it is rejected."""

    __tablename__ = "return_shipments"

    return_id: str = Field(primary_key=True, max_length=36)
    order_id: str = Field(index=True, max_length=64)
    status: str = Field(max_length=16)
    label: str = Field(unique=True, max_length=32)
    """The return parcel's tracking number."""
    back_tracking_number: str | None = Field(default=None, unique=True, max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
