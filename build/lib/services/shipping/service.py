"""Shipping: create a shipment with a tracking number, or cancel it as a compensation."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import Engine

from cloudmart.contracts.failures import AlreadyCompensated, Undeliverable
from cloudmart.contracts.orders import ShippingAddress
from cloudmart.contracts.steps import CompensationResult, ShipmentResult, Undo
from services.database import get_for_update, get_or_tombstone, transaction, utcnow
from services.shipping.models import Shipment, ShipmentStatus


class ShippingService:
    def __init__(self, engine: Engine, countries: Iterable[str]) -> None:
        self.engine = engine
        self.countries = frozenset(countries)

    def create(self, order_id: str, address: ShippingAddress) -> ShipmentResult:
        with transaction(self.engine) as session:
            row = get_for_update(session, Shipment, order_id)
            if row is None:
                if address.country not in self.countries:
                    raise Undeliverable(
                        f"we do not deliver to {address.country}; "
                        f"destinations: {', '.join(sorted(self.countries))}"
                    )
                row = Shipment(
                    order_id=order_id,
                    status=ShipmentStatus.CREATED,
                    tracking_number=f"CM{uuid.uuid4().hex[:14].upper()}",
                    country=address.country,
                    address=address.model_dump(),
                )
                session.add(row)
            elif row.status != ShipmentStatus.CREATED:
                raise AlreadyCompensated(
                    f"shipment for order {order_id} was already cancelled; not creating it again"
                )
            assert row.tracking_number is not None
            return ShipmentResult(order_id=order_id, tracking_number=row.tracking_number)

    def cancel(self, order_id: str, reason: str) -> CompensationResult:
        with transaction(self.engine) as session:
            tombstone = {
                "order_id": order_id,
                "status": ShipmentStatus.TOMBSTONE,
                "reason": reason[:500],
            }
            row, _ = get_or_tombstone(session, Shipment, order_id, tombstone)
            match row.status:
                case ShipmentStatus.TOMBSTONE:
                    return CompensationResult(outcome=Undo.NOTHING_TO_UNDO, detail="no shipment")
                case ShipmentStatus.CANCELLED:
                    return CompensationResult(outcome=Undo.ALREADY_UNDONE)
            row.status = ShipmentStatus.CANCELLED
            row.reason = reason[:500]
            row.updated_at = utcnow()
            return CompensationResult(
                outcome=Undo.UNDONE, detail=f"cancelled shipment {row.tracking_number}"
            )
