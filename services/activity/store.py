"""The activity database: actions stored once each, a customer's timeline, and the signals the
recommendations rank by."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine, and_, func, or_, select
from sqlmodel import Session, col

from services.activity.actions import Recorded, activity_event_id
from services.activity.models import ActivityRow, ActivityType
from services.database import insert_if_absent, read_only, transaction

log = logging.getLogger("cloudmart.activity")

SEARCHES_READ = 500
"""The latest searches a recommendation looks at: enough to know what a customer looks for."""


class ActivityEntry(BaseModel):
    """One action in a customer's timeline (``GET /customers/{id}/activity``)."""

    event_id: str
    type: ActivityType
    subject: str | None
    """The sku of a view or a rating, the order id of an order's action."""
    data: dict[str, Any]
    occurred_at: datetime
    request_id: str


class ActivityPage(BaseModel):
    items: list[ActivityEntry]
    next_cursor: str | None


class InvalidCursor(ValueError):
    pass


class ActivityStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._reads = read_only(engine)

    def record(self, actions: Iterable[Recorded]) -> int:
        """Store each action once (a retried request's second action is skipped); returns how
        many were new. A cancel whose customer is unknown takes the customer of the order's
        ``order_placed``; with none recorded, it is dropped (an order placed before activity was
        tracked, say)."""
        actions = list(actions)
        if not actions:
            return 0
        with transaction(self.engine) as session:
            owners = self._owners(session, actions)
            rows = []
            for action in actions:
                customer = action.customer_id or owners.get(action.subject or "")
                if customer is None:
                    log.info(
                        "%s of %s: no customer known, not recorded", action.type, action.subject
                    )
                    continue
                rows.append(
                    {
                        "event_id": activity_event_id(customer, action.type, action.key),
                        "customer_id": customer,
                        "activity_type": action.type.value,
                        "subject": action.subject,
                        "data": action.data,
                        "occurred_at": action.occurred_at,
                        "request_id": action.request_id,
                        "key": action.key,
                    }
                )
            # Skips an event id stored before, or earlier in this batch (a retry's twin).
            return insert_if_absent(session, ActivityRow, rows)

    def _owners(self, session: Session, actions: list[Recorded]) -> dict[str, str]:
        """The customer of each order an anonymous action names, from its ``order_placed``
        (in this batch, or stored before)."""
        wanted = {a.subject for a in actions if a.customer_id is None and a.subject is not None}
        if not wanted:
            return {}
        owners = {
            a.subject: a.customer_id
            for a in actions
            if a.type is ActivityType.ORDER_PLACED and a.subject in wanted and a.customer_id
        }
        missing = wanted - owners.keys()
        if missing:
            placed = select(ActivityRow.subject, ActivityRow.customer_id).where(
                ActivityRow.activity_type == ActivityType.ORDER_PLACED.value,
                col(ActivityRow.subject).in_(missing),
            )
            owners.update({subject: customer for subject, customer in session.execute(placed)})
        return owners  # type: ignore[return-value]

    def timeline(
        self,
        customer_id: str,
        *,
        types: Iterable[ActivityType] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> ActivityPage:
        """Newest first (by when it happened, then by when it was stored); ``since``
        inclusive, ``until`` exclusive; the cursor is where the previous page ended."""
        statement = select(ActivityRow).where(ActivityRow.customer_id == customer_id)
        wanted = [t.value for t in types]
        if wanted:
            statement = statement.where(col(ActivityRow.activity_type).in_(wanted))
        if since is not None:
            statement = statement.where(col(ActivityRow.occurred_at) >= since)
        if until is not None:
            statement = statement.where(col(ActivityRow.occurred_at) < until)
        if cursor is not None:
            after_time, after_position = _decode(cursor)
            statement = statement.where(
                or_(
                    col(ActivityRow.occurred_at) < after_time,
                    and_(
                        col(ActivityRow.occurred_at) == after_time,
                        col(ActivityRow.position) < after_position,
                    ),
                )
            )
        statement = statement.order_by(
            col(ActivityRow.occurred_at).desc(), col(ActivityRow.position).desc()
        ).limit(limit + 1)
        with Session(self._reads) as session:
            rows = list(session.scalars(statement))
        more = len(rows) > limit
        rows = rows[:limit]
        items = [
            ActivityEntry(
                event_id=r.event_id,
                type=ActivityType(r.activity_type),
                subject=r.subject,
                data=r.data,
                occurred_at=r.occurred_at,
                request_id=r.request_id,
            )
            for r in rows
        ]
        last = rows[-1] if rows else None
        next_cursor = (
            _encode(last.occurred_at, last.position)
            if more and last is not None and last.position is not None
            else None
        )
        return ActivityPage(items=items, next_cursor=next_cursor)

    def views(self, customer_id: str) -> Counter[str]:
        """How often the customer viewed each product."""
        statement = (
            select(ActivityRow.subject, func.count())
            .where(
                ActivityRow.customer_id == customer_id,
                ActivityRow.activity_type == ActivityType.PRODUCT_VIEWED.value,
            )
            .group_by(ActivityRow.subject)
        )
        with Session(self._reads) as session:
            return Counter({sku: n for sku, n in session.execute(statement) if sku})

    def searched_categories(self, customer_id: str) -> Counter[str]:
        """How often the customer's latest searches filtered on each category."""
        statement = (
            select(ActivityRow.data)
            .where(
                ActivityRow.customer_id == customer_id,
                ActivityRow.activity_type == ActivityType.SEARCHED.value,
            )
            .order_by(col(ActivityRow.position).desc())
            .limit(SEARCHES_READ)
        )
        with Session(self._reads) as session:
            found = Counter[str]()
            for data in session.scalars(statement):
                category = (data.get("filters") or {}).get("category")
                if isinstance(category, str) and category:
                    found[category] += 1
            return found


def _encode(occurred_at: datetime, position: int) -> str:
    raw = json.dumps([occurred_at.isoformat(), position]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment, position = json.loads(raw)
        when = datetime.fromisoformat(moment)
        if when.tzinfo is None or type(position) is not int or not 0 <= position < 2**63:
            raise ValueError("malformed")
        return when, position
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as err:
        raise InvalidCursor("not a cursor this API gave: pass next_cursor back unchanged") from err
