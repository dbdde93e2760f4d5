"""The order: what a customer places, the saga's input, and the state the saga reports."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cloudmart.contracts.addresses import ShippingAddress
from cloudmart.contracts.customers import Guest
from cloudmart.contracts.routing import TaskQueues
from cloudmart.contracts.text import CustomerId, PaymentToken, Reason, Sku

MAX_ORDER_LINES = 50
MAX_LINE_QUANTITY = 1000


class _Request(BaseModel):
    # Unknown fields are refused rather than ignored: a client sending "price" or "total" must
    # learn that amounts are never taken from it.
    model_config = ConfigDict(extra="forbid", frozen=True)


class OrderItem(_Request):
    sku: Sku
    quantity: int = Field(strict=True, ge=1, le=MAX_LINE_QUANTITY)


class PlaceOrder(_Request):
    """The body of ``POST /orders``: for a customer or for a guest, exactly one of the two.

    ``customer_id`` names a registered customer, or one of the ids orders carried before
    customers registered (those go on as they always did). ``guest`` is a guest checkout: the
    saga's first step opens an account for the name and e-mail, and closes it again (Cancel User)
    if the order does not go through. A guest's customer id is not the client's to choose: it is
    derived from the order id (``guest_customer_id``), so a retried request that names the same
    order (the same ``Idempotency-Key``) names the same account."""

    customer_id: CustomerId | None = None
    guest: Guest | None = Field(default=None, validate_default=True)
    items: list[OrderItem] = Field(min_length=1, max_length=MAX_ORDER_LINES)
    payment_token: PaymentToken
    shipping_address: ShippingAddress

    @field_validator("guest")
    @classmethod
    def _customer_or_guest(cls, guest: Guest | None, info: ValidationInfo) -> Guest | None:
        if "customer_id" not in info.data:
            return guest  # customer_id itself was refused: that error says enough
        if guest is None and info.data["customer_id"] is None:
            raise ValueError(
                "send customer_id (a customer's order) or guest (name and email, a guest checkout)"
            )
        if guest is not None and info.data["customer_id"] is not None:
            raise ValueError(
                "send customer_id or guest, not both: a guest's customer id is given to it"
            )
        return guest

    @field_validator("items")
    @classmethod
    def _one_line_per_sku(cls, items: list[OrderItem]) -> list[OrderItem]:
        seen: set[str] = set()
        for item in items:
            if item.sku in seen:
                raise ValueError(f"sku {item.sku!r} appears twice; send one line per sku")
            seen.add(item.sku)
        return items


class StuckPolicy(BaseModel):
    """When a step or a compensation that keeps failing is reported stuck, and how it retries
    after."""

    model_config = ConfigDict(frozen=True)

    attempts: int = Field(default=20, ge=1)
    """Stuck after this many failed attempts..."""
    after: timedelta = timedelta(minutes=10)
    """...or after failing for this long, whichever comes first."""
    retry_cap: timedelta = timedelta(minutes=5)
    """Once stuck, retries back off up to this interval, and never stop (unless its service
    refused it for good)."""


EVENTS_WINDOW = timedelta(seconds=1)
"""The default of ``OrderSagaInput.events_window``."""
MAX_EVENTS_WINDOW = timedelta(minutes=10)


class OrderSagaInput(BaseModel):
    """Everything the saga needs, fixed at start so that replays see the same values."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    customer_id: str
    """The order's customer; a guest's, derived from the order id (``guest_customer_id``)."""
    guest: Guest | None = None
    """A guest checkout: the account the saga's first step opens. None in sagas started before
    the customers step, as in every order that names its customer."""
    items: list[OrderItem]
    payment_token: str
    shipping_address: ShippingAddress
    payment_review_timeout: timedelta
    task_queues: TaskQueues
    stuck_policy: StuckPolicy = StuckPolicy()
    events_window: timedelta = Field(default=EVENTS_WINDOW, gt=timedelta(0), le=MAX_EVENTS_WINDOW)
    """How long a step may run while the saga's recorded events wait to be stored
    (workflows/event_log.py): how stale the event store, and the read side built from it, may
    be about a running saga."""

    @model_validator(mode="after")
    def _guest_needs_customers(self) -> OrderSagaInput:
        if self.guest is not None and self.task_queues.customers is None:
            raise ValueError("a guest checkout needs the customers service's task queue")
        return self


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    RESERVING_INVENTORY = "RESERVING_INVENTORY"
    CHARGING_PAYMENT = "CHARGING_PAYMENT"
    AWAITING_PAYMENT_REVIEW = "AWAITING_PAYMENT_REVIEW"
    CREATING_SHIPMENT = "CREATING_SHIPMENT"
    COMPENSATING = "COMPENSATING"
    COMPENSATION_STUCK = "COMPENSATION_STUCK"
    """A compensation keeps failing, or its service refused it for good: waiting for an
    operator (retried meanwhile unless refused)."""
    STEP_STUCK = "STEP_STUCK"
    """A forward step keeps failing (not refused: its service is down, say): retried meanwhile,
    until it succeeds or an operator aborts the order."""
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    PARTIALLY_RETURNED = "PARTIALLY_RETURNED"
    """Completed, and some of its lines returned and refunded since (the read side's alone:
    a return is a choreography of its own, docs/returns.md, not a step of the saga)."""
    RETURNED = "RETURNED"
    """Completed, and every cent of it refunded by returns since (the read side's alone)."""

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({OrderStatus.COMPLETED, OrderStatus.FAILED, OrderStatus.CANCELLED})


class StepStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    RESOLVED = "RESOLVED"
    """A stuck compensation an operator marked as done by hand."""


class StepRecord(BaseModel):
    """One step or compensation of the saga, as it stands now."""

    name: str
    status: StepStatus
    at: datetime
    detail: str | None = None


class Failure(BaseModel):
    type: str
    message: str


class StuckStep(BaseModel):
    """The forward step an operator is asked to look at: retried in rounds until it succeeds,
    sooner if an operator asks (``POST /orders/{id}/step/retry``), or until an operator aborts
    the order (``POST /orders/{id}/abort``)."""

    step: str
    since: datetime
    last_error: str
    """What its last attempt failed with, as its service's error crossed into Temporal (a
    library's message withheld: activities/failures.py)."""
    rounds: int = 1
    """Rounds of retries failed so far (the first is the one that declared it stuck)."""


class StuckCompensation(StuckStep):
    """The compensation an operator is asked to look at."""

    retrying: bool = True
    """False when its service refused it for good (a non-retryable error): nothing retries it
    until an operator asks (``POST /orders/{id}/compensation/retry``) or resolves it by hand."""


class OrderState(BaseModel):
    """The saga's state: the answer of its ``state`` query and of ``GET /orders/{id}``."""

    order_id: str
    customer_id: str
    status: OrderStatus
    items: list[OrderItem]
    total_cents: int | None = None
    tracking_number: str | None = None
    failure: Failure | None = None
    cancel_reason: str | None = None
    steps: list[StepRecord] = []
    compensations: list[StepRecord] = []
    stuck: StuckCompensation | None = None
    stuck_step: StuckStep | None = None
    created_at: datetime
    updated_at: datetime


class OrderView(OrderState):
    """The answer of ``GET /orders/{id}``: the saga's state, marked with where it came from.

    A subclass, not new fields on ``OrderState``: that is also the saga's query and result, and
    where an answer came from is the API's business, not the workflow's. Clients that read only
    ``OrderState``'s fields see the same answer as before."""

    source: Literal["saga", "event_store"] = "saga"
    """``event_store`` when the saga could not be asked (Temporal or its workers unreachable)
    and the answer is the fold of the order's stored events instead: then ``steps`` and
    ``compensations`` are empty and ``stuck`` is null (only the saga knows them), and the state
    is as of the saga's last append (docs/events-and-cqrs.md)."""
    as_of_sequence: int | None = None
    """With ``source`` ``event_store``: the sequence number of the last stored event folded."""


class CancelOrder(_Request):
    """The body of ``POST /orders/{id}/cancel``."""

    reason: Reason = "cancelled by customer"


class PaymentReviewDecision(_Request):
    """The body of ``POST /orders/{id}/payment-review``."""

    approved: bool = Field(strict=True)


class ResolveCompensation(_Request):
    """The body of ``POST /orders/{id}/compensation/resolve``: an operator undid ``step`` by
    hand (refunded from the provider's dashboard, say) and says how."""

    step: Annotated[str, StringConstraints(pattern=r"^[a-z]{1,30}\.[a-z_]{1,30}$")]
    """The stuck compensation, e.g. ``payment.refund`` (as the order's state names it)."""
    note: Reason


class AbortOrder(_Request):
    """The body of ``POST /orders/{id}/abort``: an operator gives up on the order's stuck step."""

    reason: Reason = "aborted by an operator"


Actor = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$")]
"""Who acted, as the order's events record it (their ``user_id``): an operator's name."""


class CancelUpdate(CancelOrder):
    """The argument of the saga's ``cancel`` update: the body, and who asked.

    ``by`` (in the update arguments below too) is the API's to fill from the caller's token,
    never from the request body, whose models stay as they are; None records the customer
    here, ``operator`` in the other two. Updates recorded before it existed carry none and
    still decode."""

    by: Actor | None = None


class ReviewPaymentUpdate(PaymentReviewDecision):
    """The argument of the saga's ``review_payment`` update: the decision, and who made it."""

    by: Actor | None = None


class ResolveCompensationUpdate(ResolveCompensation):
    """The argument of the saga's ``resolve_compensation`` update: the resolution, and by whom."""

    by: Actor | None = None


class RetryStepUpdate(_Request):
    """The argument of the saga's ``retry_step`` update: who asked."""

    by: Actor | None = None


class AbortOrderUpdate(AbortOrder):
    """The argument of the saga's ``abort`` update: the reason, and who aborted."""

    by: Actor | None = None


class UpdateAccepted(BaseModel):
    order_id: str
    status: OrderStatus


class OrderAccepted(BaseModel):
    """The answer to ``POST /orders``: the saga is started (or was, for a repeated key)."""

    order_id: str
    status: OrderStatus
    state: OrderView | None = None
    """With ``POST /orders?wait=``: the saga's state (as ``GET /orders/{id}`` shows it) when the
    answer was given, its final one if it ended within the wait (``status`` is then its status
    too). Absent without ``wait``, or if no worker could say."""
    customer_id: str | None = None
    """The order's customer: for a guest checkout, the account's id the API gave it."""
    customer_token: str | None = None
    """For a guest checkout while the API requires tokens (CLOUDMART_REQUIRE_AUTH): the new
    customer's bearer token, to follow and cancel the order with (and for its next orders)."""


GUEST_NAMESPACE = uuid.UUID("8c1f4b2e-5d3a-4e7f-9b61-0a2d7c5e3f94")


def guest_customer_id(order_id: str) -> str:
    """The customer id of the guest who places ``order_id``: the same for every retry of the
    same order, never one a client chose."""
    return f"guest-{uuid.uuid5(GUEST_NAMESPACE, order_id)}"


def saga_input(
    order_id: str,
    order: PlaceOrder,
    *,
    payment_review_timeout: timedelta,
    task_queues: TaskQueues,
    stuck_policy: StuckPolicy | None = None,
    events_window: timedelta = EVENTS_WINDOW,
) -> OrderSagaInput:
    return OrderSagaInput(
        order_id=order_id,
        customer_id=order.customer_id or guest_customer_id(order_id),
        guest=order.guest,
        items=order.items,
        payment_token=order.payment_token,
        shipping_address=order.shipping_address,
        payment_review_timeout=payment_review_timeout,
        task_queues=task_queues,
        stuck_policy=stuck_policy or StuckPolicy(),
        events_window=events_window,
    )
