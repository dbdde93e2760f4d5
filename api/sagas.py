"""What the API asks of the order sagas in Temporal; Temporal's errors become the API's."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import (
    ApiError,
    OrderConflict,
    OrderHasEnded,
    OrderNotFound,
    Unavailable,
    UnprocessableField,
)
from cloudmart.contracts.orders import (
    AbortOrder,
    AbortOrderUpdate,
    CancelOrder,
    CancelUpdate,
    OrderAccepted,
    OrderState,
    OrderStatus,
    PaymentReviewDecision,
    PlaceOrder,
    ResolveCompensation,
    ResolveCompensationUpdate,
    RetryStepUpdate,
    ReviewPaymentUpdate,
    UpdateAccepted,
)
from cloudmart.contracts.saga import (
    CUSTOMER_ID,
    ORDER_STATUS,
    start_search_attributes,
    workflow_id,
)
from cloudmart.settings import Settings
from workflows.order_saga import OrderSaga

log = logging.getLogger("cloudmart.api")

IDEMPOTENCY_NAMESPACE = uuid.UUID("4f1d8e0c-6b8e-4d55-9c43-6f0d2c6f9a11")
"""Order ids for idempotent requests are uuid5(this, "<customer id> <key>"): a customer's key
names one saga, and the same key from another customer another one. A guest checkout's key is
scoped by the guest's e-mail instead ("guest <email> <key>"), its customer id being derived from
the order id."""

REQUEST_HASH = "request_sha256"
"""Memo field holding the hash of the body that started the saga, to detect a reused key."""

WORKER_DEADLINE = timedelta(seconds=5)
"""How long a query or update waits for a worker to answer before the API gives up (503)."""


RESOLVE_DEADLINE = timedelta(seconds=20)


class Sagas:
    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    async def place(self, order: PlaceOrder, idempotency_key: str | None) -> OrderAccepted:
        """Start the order's saga; with a key its customer already used, answer for the saga it
        started."""
        request_hash = body_hash(order)
        if idempotency_key is None:
            order_id = str(uuid.uuid4())
        elif order.customer_id is None:
            assert order.guest is not None  # PlaceOrder: one or the other
            order_id = idempotent_order_id(f"guest {order.guest.email}", idempotency_key)
        else:
            placed = await self._placed_with_unscoped_key(order, idempotency_key, request_hash)
            if placed is not None:
                return placed
            order_id = idempotent_order_id(order.customer_id, idempotency_key)
        saga = self._settings.saga_input(order_id, order)  # a guest's customer id, derived
        try:
            await self._client.start_workflow(
                OrderSaga.run,
                saga,
                id=workflow_id(order_id),
                task_queue=saga.task_queues.orders,
                # A workflow id is never reused: a repeated key can never start a second saga.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                search_attributes=start_search_attributes(saga.customer_id),
                memo={REQUEST_HASH: request_hash},
                static_summary=f"{saga.customer_id}: {len(order.items)} line(s)",
            )
        except WorkflowAlreadyStartedError:
            if idempotency_key is None:
                raise
            return await self._replay(order_id, request_hash)
        return OrderAccepted(
            order_id=order_id, status=OrderStatus.PENDING, customer_id=saga.customer_id
        )

    async def _placed_with_unscoped_key(
        self, order: PlaceOrder, key: str, request_hash: str
    ) -> OrderAccepted | None:
        """The order this customer placed with ``key`` when keys named orders alone
        (uuid5(namespace, key)), if Temporal still retains it: a client retrying across the
        upgrade must not place a second order. Another customer's is none of this one's
        business. Remove once the sagas started before the upgrade are past the namespace's
        retention (30 days under make up and compose)."""
        order_id = str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, key))
        try:
            description = await self._handle(order_id).describe()
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return None
            raise
        if description.typed_search_attributes.get(CUSTOMER_ID) != order.customer_id:
            return None
        return await self._replay(order_id, request_hash, description)

    async def _replay(
        self,
        order_id: str,
        request_hash: str,
        description: WorkflowExecutionDescription | None = None,
    ) -> OrderAccepted:
        description = description or await self._handle(order_id).describe()
        if await description.memo_value(REQUEST_HASH, default=None) != request_hash:
            raise UnprocessableField(
                ("header", "Idempotency-Key"),
                "this Idempotency-Key was already used with a different request body",
                "idempotency_conflict",
            )
        attributes = description.typed_search_attributes
        return OrderAccepted(
            order_id=order_id,
            status=OrderStatus(attributes.get(ORDER_STATUS) or "PENDING"),
            customer_id=attributes.get(CUSTOMER_ID),
        )

    async def state(self, order_id: str) -> OrderState:
        async with self._answers(order_id, "query"):
            return await self._handle(order_id).query(OrderSaga.state, rpc_timeout=WORKER_DEADLINE)

    async def final_state(self, order_id: str, wait: float) -> OrderState:
        """The saga's state once it has ended, waiting up to ``wait`` seconds for that; its
        current state (a query) if it is still running by then."""
        return await self.ended_state(order_id, wait) or await self.state(order_id)

    async def ended_state(self, order_id: str, wait: float) -> OrderState | None:
        """The saga's final state if it ends within ``wait`` seconds; None if it is still
        running by then, or ended without one (failed, cancelled or terminated through
        Temporal: the result carries only the failure, the state query has the steps and
        compensations too).

        The wait is on the saga's result: the server long-polls its history for the close
        event, so no worker is asked anything while the saga runs, and a closed saga answers
        at once. Cancelling the caller drops the long-poll's RPC with it."""
        try:
            async with self._answers(order_id, "query"), asyncio.timeout(wait):
                return await self._handle(order_id).result()
        except (TimeoutError, WorkflowFailureError):
            return None

    async def cancel(
        self, order_id: str, request: CancelOrder, by: str | None = None
    ) -> UpdateAccepted:
        """``by``: who cancels, as the order's events record it (None: its customer)."""
        try:
            async with self._answers(order_id, "update"):
                return await self._handle(order_id).execute_update(
                    OrderSaga.cancel,
                    _with_by(request, CancelUpdate, by),
                    # A stable id: a retry (say after a 503 whose update the saga still got)
                    # joins the first request's outcome instead of being judged again.
                    id="cancel",
                    rpc_timeout=WORKER_DEADLINE,
                )
        except OrderHasEnded as ended:
            if ended.status is OrderStatus.CANCELLED:  # cancelling it again: done already
                return UpdateAccepted(order_id=order_id, status=ended.status)
            raise

    async def review_payment(
        self, order_id: str, decision: PaymentReviewDecision, by: str | None = None
    ) -> UpdateAccepted:
        """``by``: the operator's name, as the order's events record it (None: ``operator``)."""
        async with self._answers(order_id, "update"):
            return await self._handle(order_id).execute_update(
                OrderSaga.review_payment,
                _with_by(decision, ReviewPaymentUpdate, by),
                id=f"review-payment-{'approve' if decision.approved else 'reject'}",
                rpc_timeout=WORKER_DEADLINE,
            )

    async def owner(self, order_id: str) -> str | None:
        """The customer whose order this is (404 if there is no such order)."""
        try:
            description = await self._handle(order_id).describe()
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                raise OrderNotFound(order_id) from err
            raise
        return description.typed_search_attributes.get(CUSTOMER_ID)

    async def retry_compensation(self, order_id: str) -> UpdateAccepted:
        async with self._answers(order_id, "update"):
            return await self._handle(order_id).execute_update(
                OrderSaga.retry_compensation, rpc_timeout=WORKER_DEADLINE
            )

    async def resolve_compensation(
        self, order_id: str, resolution: ResolveCompensation, by: str | None = None
    ) -> UpdateAccepted:
        """``by``: the operator's name, as the order's events record it (None: ``operator``)."""
        async with self._answers(order_id, "update", RESOLVE_DEADLINE):
            return await self._handle(order_id).execute_update(
                OrderSaga.resolve_compensation,
                _with_by(resolution, ResolveCompensationUpdate, by),
                # One resolution per step: a retried request joins the first one's outcome.
                id=f"resolve-{resolution.step}",
                # Answered once the round in flight has ended: its attempt may take a step's
                # whole start-to-close timeout (10 s).
                rpc_timeout=RESOLVE_DEADLINE,
            )

    async def retry_step(self, order_id: str, by: str | None = None) -> UpdateAccepted:
        """``by``: the operator's name, as the order's events record it (None: ``operator``)."""
        async with self._answers(order_id, "update"):
            return await self._handle(order_id).execute_update(
                OrderSaga.retry_step, RetryStepUpdate(by=by), rpc_timeout=WORKER_DEADLINE
            )

    async def abort(
        self, order_id: str, request: AbortOrder, by: str | None = None
    ) -> UpdateAccepted:
        """``by``: the operator's name, as the order's events record it (None: ``operator``)."""
        async with self._answers(order_id, "update"):
            return await self._handle(order_id).execute_update(
                OrderSaga.abort,
                AbortOrderUpdate(**request.model_dump(), by=by),
                # One abort per order: a retried request joins the first one's outcome.
                id="abort",
                rpc_timeout=WORKER_DEADLINE,
            )

    def _handle(self, order_id: str) -> WorkflowHandle[OrderSaga, OrderState]:
        return self._client.get_workflow_handle_for(OrderSaga.run, workflow_id(order_id))

    @asynccontextmanager
    async def _answers(
        self, order_id: str, kind: str, deadline: timedelta = WORKER_DEADLINE
    ) -> AsyncIterator[None]:
        """Turn what Temporal says about a query or update into the API's answer."""
        try:
            yield
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            raise OrderConflict(message) from err
        except WorkflowUpdateRPCTimeoutOrCancelledError as err:
            raise self._no_worker(order_id, kind, deadline) from err
        except WorkflowQueryFailedError as err:
            log.error("query of order %s failed: %s", order_id, err)
            raise ApiError(
                f"the state of order {order_id} could not be read; it has been logged"
            ) from err
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                raise await self._not_running(order_id) from err
            if _deadline_passed(err) or _no_recent_poller(err):
                raise self._no_worker(order_id, kind, deadline) from err
            if _workflow_task_failing(err):
                raise Unavailable(
                    f"order {order_id}'s saga is recovering (its workflow task is being retried, "
                    "e.g. after a worker crash); try again shortly"
                ) from err
            raise

    @staticmethod
    def _no_worker(order_id: str, kind: str, deadline: timedelta) -> Unavailable:
        return Unavailable(
            f"no worker answered the {kind} for order {order_id} within "
            f"{deadline.seconds}s; is the worker running?"
        )

    async def _not_running(self, order_id: str) -> Exception:
        """Why a request found no running saga: it never existed (404) or it has ended (409)."""
        try:
            description = await self._handle(order_id).describe()
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return OrderNotFound(order_id)
            raise
        status = _status(description.typed_search_attributes.get(ORDER_STATUS))
        return OrderHasEnded(order_id, status, f"order is already {status or description.status}")


def body_hash(order: PlaceOrder) -> str:
    """What the saga's memo keeps of the request that started it (``REQUEST_HASH``). A
    customer's order hashes without ``guest``, as it did before there were guests: a client
    retrying across that upgrade sends the same body and must find the same hash."""
    exclude = {"guest"} if order.guest is None else None
    return hashlib.sha256(order.model_dump_json(exclude=exclude).encode()).hexdigest()


def _with_by(body: BaseModel, update: type[BaseModel], by: str | None) -> BaseModel:
    """An update's argument: the request's body, and who acted. Without a name, the body as it
    is, byte for byte what workers from before ``by`` accept (their models refuse unknown
    fields), so a name-less update works across a rolling deploy."""
    return body if by is None else update(**body.model_dump(), by=by)


def idempotent_order_id(customer_id: str, key: str) -> str:
    """The order a customer's ``Idempotency-Key`` names. A customer id has no space, so the
    pair reads one way only."""
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{customer_id} {key}"))


def _deadline_passed(err: RPCError) -> bool:
    # The SDK reports its own client-side deadline as CANCELLED "Timeout expired".
    return err.status is RPCStatusCode.DEADLINE_EXCEEDED or (
        err.status is RPCStatusCode.CANCELLED and "timeout" in err.message.lower()
    )


def _no_recent_poller(err: RPCError) -> bool:
    """The server answers a query at once when no worker has polled the saga's task queue
    lately (every worker killed or down), rather than waiting out the deadline. It carries no
    typed detail: its message is all there is."""
    return err.status is RPCStatusCode.FAILED_PRECONDITION and "no poller seen" in err.message


def _workflow_task_failing(err: RPCError) -> bool:
    """The server refuses queries and updates while the saga's last workflow task failed or
    timed out (a worker killed mid-task) until a worker completes its retry: transient."""
    return err.status is RPCStatusCode.FAILED_PRECONDITION and any(
        detail.type_url.endswith("WorkflowNotReadyFailure") for detail in err.grpc_status.details
    )


def _status(value: str | None) -> OrderStatus | None:
    """The OrderStatus search attribute, tolerating values this version does not know."""
    return OrderStatus(value) if value in OrderStatus.__members__ else None
