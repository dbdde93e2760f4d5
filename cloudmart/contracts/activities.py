"""The saga's activities by name: the single place where workflow and workers agree on them.

The workflow calls activities by name (it must not import service code, which touches
databases); each service's activity class registers its functions under these names, and a test
checks that every name here is implemented with these argument and result types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel

from cloudmart.contracts.events import Appended, AppendEvents
from cloudmart.contracts.steps import (
    ChargePayment,
    ChargeResult,
    CheckFraud,
    CommitInventory,
    Compensate,
    CompensationResult,
    CreateShipment,
    CustomerChecked,
    EnsureCustomer,
    FraudAssessment,
    Reservation,
    ReserveInventory,
    ResolvePaymentReview,
    ShipmentResult,
)

ArgT = TypeVar("ArgT", bound=BaseModel)
ResultT = TypeVar("ResultT", bound=BaseModel)


@dataclass(frozen=True)
class ActivitySpec(Generic[ArgT, ResultT]):
    name: str
    service: str
    arg_type: type[ArgT]
    result_type: type[ResultT]


ENSURE_CUSTOMER = ActivitySpec("customers.ensure", "customers", EnsureCustomer, CustomerChecked)
CANCEL_USER = ActivitySpec("customers.cancel_user", "customers", Compensate, CompensationResult)
"""Closes the account the order's guest checkout opened, unless it has placed another order."""

RESERVE_INVENTORY = ActivitySpec("inventory.reserve", "inventory", ReserveInventory, Reservation)
RELEASE_INVENTORY = ActivitySpec("inventory.release", "inventory", Compensate, CompensationResult)
COMMIT_INVENTORY = ActivitySpec("inventory.commit", "inventory", CommitInventory, Reservation)

CHECK_FRAUD = ActivitySpec("payment.check_fraud", "payment", CheckFraud, FraudAssessment)
CHARGE_PAYMENT = ActivitySpec("payment.charge", "payment", ChargePayment, ChargeResult)
RESOLVE_PAYMENT_REVIEW = ActivitySpec(
    "payment.resolve_review", "payment", ResolvePaymentReview, ChargeResult
)
REFUND_PAYMENT = ActivitySpec("payment.refund", "payment", Compensate, CompensationResult)

CREATE_SHIPMENT = ActivitySpec("shipping.create", "shipping", CreateShipment, ShipmentResult)
CANCEL_SHIPMENT = ActivitySpec("shipping.cancel", "shipping", Compensate, CompensationResult)

APPEND_EVENTS = ActivitySpec("event_store.append", "event_store", AppendEvents, Appended)
"""Runs in the orchestrator's worker, on the saga's own task queue (so Temporal hands it
straight back to that worker: eager dispatch)."""

ALL_ACTIVITIES: tuple[ActivitySpec[BaseModel, BaseModel], ...] = (
    APPEND_EVENTS,
    ENSURE_CUSTOMER,
    CANCEL_USER,
    RESERVE_INVENTORY,
    RELEASE_INVENTORY,
    COMMIT_INVENTORY,
    CHECK_FRAUD,
    CHARGE_PAYMENT,
    RESOLVE_PAYMENT_REVIEW,
    REFUND_PAYMENT,
    CREATE_SHIPMENT,
    CANCEL_SHIPMENT,
)
