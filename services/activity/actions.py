"""An action as the API records it, and the key that makes a retried request record it once."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from services.activity.models import ActivityType

NAMESPACE = uuid.UUID("5f2b8c1e-7d4a-4e8b-9a61-3c0d2e9f7b44")
MAX_REQUEST_ID = 128
REQUEST_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_REQUEST_ID}}}")
"""A client's X-Request-Id is used only if it is printable ASCII, no spaces, at most 128
characters; anything else is ignored (and the request gets an id of ours)."""


class Recorded(BaseModel):
    """One customer action, as the journal holds it until it is in the activity database."""

    model_config = ConfigDict(frozen=True)

    customer_id: str | None
    """None only for a cancel or a return by a caller without a customer token: the order's
    customer is looked up when it is stored (docs/activity.md)."""
    type: ActivityType
    subject: str | None = None
    data: dict[str, Any] = {}
    occurred_at: datetime
    request_id: str
    key: str


def client_request_id(header: str | None) -> str | None:
    """The client's X-Request-Id, if it is one we can keep."""
    if header is not None and REQUEST_ID.fullmatch(header):
        return header
    return None


def activity_key(
    *, natural: str | None, idempotency_key: str | None, request_id: str | None
) -> str:
    """What makes the action unique, so that a retried request records it once:

    - a natural key, for an action that can happen only once (an order is cancelled once, a
      customer registers once), whatever the client sends;
    - else the request's ``Idempotency-Key`` (a retried ``POST /orders`` sends it again);
    - else the ``X-Request-Id`` the client sent (a client retrying with it);
    - else a fresh id: a request with none of these is its own action.

    Each is prefixed by its kind, so that a client's key can never collide with a natural one.
    """
    if natural is not None:
        return f"natural:{natural}"
    if idempotency_key is not None:
        return f"idempotency:{idempotency_key}"
    if request_id is not None:
        return f"request:{request_id}"
    return f"fresh:{uuid.uuid4().hex}"


def activity_event_id(customer_id: str, activity_type: ActivityType, key: str) -> str:
    """The stored action's id: the same customer, type and key give the same id."""
    return str(uuid.uuid5(NAMESPACE, f"{customer_id}\n{activity_type.value}\n{key}"))
