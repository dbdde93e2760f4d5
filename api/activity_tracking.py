"""Activity tracking on the request path: each customer action the API answers is recorded, in
one place, by an ASGI middleware that looks at the request and its answer (docs/activity.md).

The routes know nothing of it. An action is recorded only when the API said yes (a 2xx), and
before that answer leaves: appended to the journal (services/activity/journal.py), which a
killed process does not lose, then stored in the activity database in batches, off the request
path. Which customer acted: the customer token's; for ``POST /orders`` the order's
``customer_id`` (the route has checked it against the token); for a rating and a registration,
the customer the answer names. A search or a product view without a customer token is nobody's
and is not recorded.

    install(app, settings)   # in create_app, before the other middleware: it is innermost
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import Caller, bearer, document_optional_auth, get_caller
from api.errors import ApiError
from cloudmart.settings import Settings
from services.activity.actions import Recorded, activity_key, client_request_id
from services.activity.journal import Journal
from services.activity.models import ActivityType
from services.activity.store import ActivityStore
from services.database import utcnow
from services.factory import build_activity, prepare

log = logging.getLogger("cloudmart.activity")

BATCH_DELAY = 0.05
"""Seconds the store waits after an action for others to join its batch."""
RETRY_DELAY = 2.0
"""Seconds between attempts while the activity database is unreachable."""
ORPHAN_SCAN = 30.0
"""Seconds between looks for the journals of API processes that died meanwhile."""
ROTATE_BYTES = 1 << 20
"""A journal file this large is replaced by a new one once everything in it is stored."""
SEARCH_FILTERS = ("q", "category", "min_price", "max_price", "in_stock", "min_rating", "sort")


class ActivityTracking:
    """The journal, the activity database, and the task that moves one into the other."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.enabled = settings.activity_tracking
        self.journal = Journal(settings.activity_journal)
        self._store: ActivityStore | None = None
        self._pending: list[Recorded] = []
        self._storing = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def store(self) -> ActivityStore:
        if self._store is None:
            raise RuntimeError("activity tracking has not started")
        return self._store

    async def start(self) -> None:
        """Migrate the activity database (the API is its only writer), store what dead
        processes left in their journals, before the first request, then follow our own."""
        self._store = build_activity(self.settings)
        await asyncio.to_thread(prepare, self._store, self.settings)
        if not self.enabled:
            return
        self._wake = asyncio.Event()  # this event loop's
        self._storing = asyncio.Lock()
        self.journal.open()
        await asyncio.to_thread(self._store_orphans)
        self._task = asyncio.create_task(self._follow(), name="activity-journal")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.enabled and self._store is not None:
            try:
                await self.flush()
            except SQLAlchemyError as err:
                log.warning("activity not stored at shutdown (kept in the journal): %s", err)
            self.journal.close(stored=not self._pending)
        if self._store is not None:
            self._store.engine.dispose()

    def record(self, action: Recorded) -> None:
        """Durable when this returns: the caller may answer."""
        self.journal.append(action)
        self._pending.append(action)
        self._wake.set()

    async def flush(self) -> None:
        """Store every action recorded so far (a timeline read after a request sees it)."""
        async with self._storing:
            if not self._pending:
                return
            batch, self._pending = self._pending, []
            try:
                await asyncio.to_thread(self.store.record, batch)
            except BaseException:
                self._pending[:0] = batch  # still in the journal; tried again
                raise
            # No await since the check: everything appended to this file is now stored.
            if not self._pending and self.journal.size >= ROTATE_BYTES:
                self.journal.rotate()

    async def _follow(self) -> None:
        scanned = asyncio.get_running_loop().time()
        while True:
            with suppress(TimeoutError):  # no action for a while: look for orphans anyway
                await asyncio.wait_for(self._wake.wait(), ORPHAN_SCAN)
            self._wake.clear()
            await asyncio.sleep(BATCH_DELAY)
            try:
                await self.flush()
                if asyncio.get_running_loop().time() - scanned >= ORPHAN_SCAN:
                    scanned = asyncio.get_running_loop().time()
                    await asyncio.to_thread(self._store_orphans)
            except SQLAlchemyError as err:
                log.warning("activity database unavailable, retrying: %s", err)
                await asyncio.sleep(RETRY_DELAY)
                self._wake.set()

    def _store_orphans(self) -> None:
        for orphan in self.journal.orphans():
            try:
                stored = self.store.record(orphan.actions())
            except SQLAlchemyError as err:
                log.warning("%s kept for later: %s", orphan.path, err)
                orphan.release()
                continue
            log.info("%s: %d action(s) stored from a journal left behind", orphan.path, stored)
            orphan.discard()


# --- what each route's answer records -------------------------------------------------------


@dataclass
class Exchange:
    """A request and its answer, as far as the middleware needs them."""

    scope: Scope
    match: re.Match[str]
    status: int = 0
    request_body: bytearray = field(default_factory=bytearray)
    answer: bytearray = field(default_factory=bytearray)

    def header(self, name: bytes) -> str | None:
        for key, value in self.scope["headers"]:
            if key == name:
                return value.decode("latin-1")
        return None

    def json(self, body: bytearray) -> dict[str, Any]:
        try:
            value = json.loads(body or b"{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    async def caller(self) -> Caller | None:
        """Who called, as the routes see it (api/auth.py); None for a token it refuses."""
        try:
            credentials = await bearer(Request(self.scope))
            return await get_caller(credentials, self.scope["app"].state.cloudmart)
        except ApiError:
            return None

    async def token_customer(self) -> str | None:
        """The customer a customer token names; None for the operator and anonymous callers
        (and while tokens are off, when the API takes every caller as anonymous)."""
        caller = await self.caller()
        return None if caller is None or caller.operator else caller.customer_id


@dataclass(frozen=True)
class Action:
    """What an answer records, before the key and the times are added."""

    customer_id: str | None
    type: ActivityType
    subject: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    natural_key: str | None = None


async def _searched(x: Exchange) -> list[Action]:
    customer = await x.token_customer()
    if customer is None:
        return []  # anonymous: nobody's search
    given = dict(parse_qsl(x.scope["query_string"].decode("latin-1")))
    filters = {name: given[name] for name in SEARCH_FILTERS if name in given}
    return [Action(customer, ActivityType.SEARCHED, data={"filters": filters})]


async def _viewed(x: Exchange) -> list[Action]:
    customer = await x.token_customer()
    if customer is None:
        return []
    return [Action(customer, ActivityType.PRODUCT_VIEWED, subject=x.match["sku"])]


async def _placed(x: Exchange) -> list[Action]:
    order, answer = x.json(x.request_body), x.json(x.answer)
    # The answer's customer first: a guest checkout's account id is the API's to give.
    customer = answer.get("customer_id") or order.get("customer_id")
    order_id = answer.get("order_id")
    if not isinstance(customer, str) or not isinstance(order_id, str):
        return []
    items = [
        {"sku": item.get("sku"), "quantity": item.get("quantity")}
        for item in order.get("items") or []
        if isinstance(item, dict)
    ]
    # One order, one action: a retry with the same Idempotency-Key answers the same order id.
    actions = [
        Action(
            customer,
            ActivityType.ORDER_PLACED,
            subject=order_id,
            data={"items": items},
            natural_key=order_id,
        )
    ]
    if answer.get("customer_token"):  # a guest's token (never the token itself)
        actions.append(Action(customer, ActivityType.TOKEN_ISSUED, natural_key=order_id))
    return actions


async def _cancelled(x: Exchange) -> list[Action]:
    caller = await x.caller()
    if caller is not None and caller.operator:
        return []  # the operator's action, not the customer's: the audit log's
    customer = caller.customer_id if caller is not None else None
    order_id = x.match["order_id"]
    # None: stored under the order's customer (its order_placed). An order is cancelled once.
    return [Action(customer, ActivityType.ORDER_CANCELLED, subject=order_id, natural_key=order_id)]


async def _returned(x: Exchange) -> list[Action]:
    caller = await x.caller()
    if caller is not None and caller.operator:
        return []  # the operator's action, not the customer's: the audit log's
    answer = x.json(x.answer)
    return_id = answer.get("return_id")
    if not isinstance(return_id, str):
        return []
    lines = [
        {"sku": line.get("sku"), "quantity": line.get("quantity")}
        for line in answer.get("lines") or []
        if isinstance(line, dict)
    ]
    # None: stored under the order's customer. A retry with its key answers the same return.
    return [
        Action(
            caller.customer_id if caller is not None else None,
            ActivityType.ORDER_RETURNED,
            subject=x.match["order_id"],
            data={"return_id": return_id, "lines": lines},
            natural_key=return_id,
        )
    ]


async def _rated(x: Exchange) -> list[Action]:
    rating = x.json(x.answer)
    customer, sku = rating.get("customer_id"), rating.get("sku")
    if not isinstance(customer, str) or rating.get("outcome") == "unchanged":
        return []  # the same rating again stores nothing, and is no new action
    data = {"stars": rating.get("stars"), "outcome": rating.get("outcome")}
    return [Action(customer, ActivityType.PRODUCT_RATED, subject=sku, data=data)]


async def _registered(x: Exchange) -> list[Action]:
    answer = x.json(x.answer)
    customer = (answer.get("customer") or {}).get("customer_id")
    if not isinstance(customer, str):
        return []
    actions = [Action(customer, ActivityType.REGISTERED, natural_key=customer)]
    if answer.get("token"):  # never the token itself
        actions.append(Action(customer, ActivityType.TOKEN_ISSUED))
    return actions


@dataclass(frozen=True)
class Tracked:
    method: str
    path: re.Pattern[str]
    statuses: frozenset[int]
    actions: Callable[[Exchange], Any]
    reads_body: bool = False
    reads_answer: bool = False


_ID = r"[0-9A-Fa-f-]{36}"
TRACKED = (
    Tracked("GET", re.compile(r"/products"), frozenset({200}), _searched),
    Tracked("GET", re.compile(r"/products/(?P<sku>[^/]{1,64})"), frozenset({200}), _viewed),
    Tracked("POST", re.compile(r"/orders"), frozenset({202}), _placed, True, True),
    Tracked(
        "POST", re.compile(rf"/orders/(?P<order_id>{_ID})/cancel"), frozenset({202}), _cancelled
    ),
    Tracked(
        "POST",
        re.compile(rf"/orders/(?P<order_id>{_ID})/returns"),
        frozenset({201}),
        _returned,
        reads_answer=True,
    ),
    Tracked(
        "POST",
        re.compile(r"/products/(?P<sku>[^/]{1,64})/ratings"),
        frozenset({200, 201}),
        _rated,
        reads_answer=True,
    ),
    Tracked("POST", re.compile(r"/customers"), frozenset({201}), _registered, reads_answer=True),
)
"""The routes whose answers record an action, and the answers that do."""


def tracked(method: str, path: str) -> tuple[Tracked, re.Match[str]] | None:
    for route in TRACKED:
        if route.method == method and (found := route.path.fullmatch(path)):
            return route, found
    return None


class ActivityMiddleware:
    def __init__(self, app: ASGIApp, tracking: ActivityTracking) -> None:
        self.app = app
        self.tracking = tracking

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http" and self.tracking.enabled:
            route = tracked(scope["method"], scope["path"])
        if route is None:
            await self.app(scope, receive, send)
            return
        spec, match = route
        exchange = Exchange(scope, match)
        held: list[Message] = []

        async def reading(  # the request's body, as the app reads it
        ) -> Message:
            message = await receive()
            if message["type"] == "http.request":
                exchange.request_body += message.get("body", b"")
            return message

        async def answering(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                if exchange.status not in spec.statuses:
                    held.clear()
                    await send(message)
                    return
                if not spec.reads_answer:
                    await self._record(spec, exchange)
                    await send(message)
                    return
                held.append(message)
                return
            if held and message["type"] == "http.response.body":
                exchange.answer += message.get("body", b"")
                held.append(message)
                if message.get("more_body", False):
                    return
                await self._record(spec, exchange)
                messages = held[:]
                held.clear()
                for each in messages:
                    await send(each)
                return
            await send(message)

        await self.app(scope, reading if spec.reads_body else receive, answering)

    async def _record(self, spec: Tracked, exchange: Exchange) -> None:
        """Before the answer leaves. A journal that cannot be written (a full disk) is logged
        and the answer still goes: the action itself (an order placed) has happened."""
        try:
            actions = await spec.actions(exchange)
            if not actions:
                return
            request_id = _request_id(exchange)
            idempotency_key = exchange.header(b"idempotency-key")
            client_id = client_request_id(exchange.header(b"x-request-id"))
            now = utcnow()
            for action in actions:
                key = activity_key(
                    natural=action.natural_key,
                    idempotency_key=idempotency_key,
                    request_id=client_id,
                )
                self.tracking.record(
                    Recorded(
                        customer_id=action.customer_id,
                        type=action.type,
                        subject=action.subject,
                        data=action.data,
                        occurred_at=now,
                        request_id=request_id,
                        key=key,
                    )
                )
        except Exception:
            log.exception(
                "activity of %s %s not recorded", exchange.scope["method"], exchange.scope["path"]
            )


def _request_id(exchange: Exchange) -> str:
    """The request's id: one an outer middleware gave it (``scope["state"]["request_id"]``),
    else the client's ``X-Request-Id``, else a new one."""
    given = exchange.scope.get("state", {}).get("request_id")
    if isinstance(given, str) and given:
        return given[:128]
    return client_request_id(exchange.header(b"x-request-id")) or uuid.uuid4().hex


def install(app: FastAPI, settings: Settings) -> ActivityTracking:
    """Track activity in ``app``: the middleware (added now, so innermost of what
    ``create_app`` adds), the timeline's and recommendations' routes with
    ``app.state.activity`` for them, and the start and stop of the journal's follower around
    the app's own lifespan."""
    from api.routes import activity  # its routes need this module's ActivityTracking

    tracking = ActivityTracking(settings)
    app.state.activity = tracking
    app.add_middleware(ActivityMiddleware, tracking=tracking)
    app.include_router(activity.router)
    if not settings.require_auth:
        document_optional_auth(app, [activity.router])
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with inner(app) as state:
            await tracking.start()
            try:
                yield state
            finally:
                await tracking.stop()

    app.router.lifespan_context = lifespan
    return tracking
