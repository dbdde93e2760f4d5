"""Shipping's part in the return saga (docs/returns.md): a label for the parcel when a return
is requested, and the parcel sent back to the customer when its inspection rejects it.

A handler of services/choreography: it follows the event store (its own checkpoint, inbox and
outbox in shipping's database, the only one it writes) and publishes its reactions there.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlmodel import Session

from cloudmart.contracts.events import StoredEvent
from cloudmart.contracts.returns import VERSION, ReturnEvent, carried
from services.choreography.outbox import Reaction
from services.database import get_for_update, utcnow
from services.shipping.models import ReturnShipment, ReturnShipmentStatus


class UnknownReturnParcel(LookupError):
    """A rejection of a return whose parcel shipping never labelled: the chain is broken."""


class ShippingReturns:
    consumer = "shipping-returns"
    publisher = "shipping"

    def handles(self, event: StoredEvent) -> bool:
        return event.event_type in (ReturnEvent.RETURN_REQUESTED, ReturnEvent.RETURN_REJECTED)

    def handle(self, session: Session, event: StoredEvent) -> Sequence[Reaction]:
        data = event.data
        if event.event_type == ReturnEvent.RETURN_REQUESTED:
            parcel = session.get(ReturnShipment, data["return_id"])
            if parcel is None:
                parcel = ReturnShipment(
                    return_id=data["return_id"],
                    order_id=data["order_id"],
                    status=ReturnShipmentStatus.LABEL_CREATED,
                    label=f"RL{uuid.uuid4().hex[:14].upper()}",
                )
                session.add(parcel)
            reaction = {**carried(data), "label": parcel.label}
            return [_reaction(event, ReturnEvent.RETURN_SHIPMENT_CREATED, reaction)]
        parcel = get_for_update(session, ReturnShipment, data["return_id"])
        if parcel is None:
            raise UnknownReturnParcel(f"return {data['return_id']}: no parcel was labelled")
        if parcel.back_tracking_number is None:
            parcel.back_tracking_number = f"CM{uuid.uuid4().hex[:14].upper()}"
            parcel.status = ReturnShipmentStatus.SENT_BACK
            parcel.updated_at = utcnow()
        reaction = {**carried(data), "tracking_number": parcel.back_tracking_number}
        return [_reaction(event, ReturnEvent.RETURN_PARCEL_SENT_BACK, reaction)]


def _reaction(cause: StoredEvent, event_type: str, data: dict[str, object]) -> Reaction:
    return Reaction(cause.aggregate_id, event_type, data, VERSION)
