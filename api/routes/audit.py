"""The compliance audit log, for operators: read it with filters, page it, export it."""

from __future__ import annotations

import csv
import io
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel
from starlette.concurrency import run_in_threadpool

from api.auth import Operator
from api.errors import AUTH_RESPONSES, UnprocessableField
from services.audit.chain import ActorKind, Entry, timestamp
from services.audit.log import AuditLog, Filter

router = APIRouter(prefix="/audit", tags=["operator"], responses=AUTH_RESPONSES)

MAX_LIMIT = 10_000


class Format(StrEnum):
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


class AuditEntry(BaseModel):
    sequence: int
    occurred_at: str
    actor_kind: str
    actor: str
    action: str
    resource: str | None
    request_id: str
    outcome: str
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_after: int | None
    """Pass it back as ``after`` for the next page; null when this page is the last."""


COLUMNS = tuple(AuditEntry.model_fields)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet may take for a formula (OWASP's CSV injection list)."""


def csv_cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: one that could start a formula gets a ``'``."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def _shown(entry: Entry) -> AuditEntry:
    return AuditEntry(
        sequence=entry.sequence,
        occurred_at=timestamp(entry.occurred_at),
        actor_kind=entry.actor_kind,
        actor=entry.actor,
        action=entry.action,
        resource=entry.resource,
        request_id=entry.request_id,
        outcome=entry.outcome,
        prev_hash=entry.prev_hash,
        hash=entry.hash,
    )


EXPORTS = {
    200: {
        "description": "The page: JSON (default), JSON Lines or CSV as ``format`` asks",
        "content": {
            "application/x-ndjson": {"schema": {"type": "string"}},
            "text/csv": {"schema": {"type": "string"}},
        },
        "headers": {
            "X-Next-After": {
                "description": "jsonl and csv: the page's next_after, absent on the last page",
                "schema": {"type": "integer"},
            }
        },
    }
}


@router.get("", response_model=AuditPage, responses=EXPORTS)
async def read_audit_log(
    request: Request,
    _: Operator,
    actor: Annotated[str | None, Query(max_length=64, description="the actor's name")] = None,
    actor_kind: Annotated[ActorKind | None, Query()] = None,
    action: Annotated[str | None, Query(max_length=200, description="e.g. POST /orders")] = None,
    resource: Annotated[str | None, Query(max_length=200, description="e.g. /orders/<id>")] = None,
    since: Annotated[AwareDatetime | None, Query(description="inclusive; with a time zone")] = None,
    until: Annotated[AwareDatetime | None, Query(description="exclusive; with a time zone")] = None,
    after: Annotated[int, Query(ge=0, description="entries after this sequence number")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    format: Annotated[Format, Query(description="json (paged), jsonl or csv")] = Format.json,
) -> Response:
    """Entries in sequence order, each matching every filter given. ``format=jsonl``
    (application/x-ndjson) and ``format=csv`` (text/csv, cells that could start a spreadsheet
    formula prefixed with ``'``) export the same page; its ``next_after`` is then the
    ``X-Next-After`` header. An operator's only."""
    if since is not None and until is not None and since >= until:
        raise UnprocessableField(("query", "until"), "must be after since", "until_before_since")
    where = Filter(
        actor=actor,
        actor_kind=actor_kind,
        action=action,
        resource=resource,
        since=since,
        until=until,
        after=after,
    )
    audit: AuditLog = request.app.state.audit
    found = await run_in_threadpool(audit.entries, where, limit=limit + 1)
    entries = [_shown(entry) for entry in found[:limit]]
    next_after = entries[-1].sequence if len(found) > limit else None
    headers = {} if next_after is None else {"X-Next-After": str(next_after)}
    if format is Format.jsonl:
        lines = "".join(entry.model_dump_json() + "\n" for entry in entries)
        return Response(lines, media_type="application/x-ndjson", headers=headers)
    if format is Format.csv:
        return Response(_csv(entries), media_type="text/csv; charset=utf-8", headers=headers)
    body = AuditPage(entries=entries, next_after=next_after).model_dump_json()
    return Response(body, media_type="application/json", headers=headers)


def _csv(entries: list[AuditEntry]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for entry in entries:
        writer.writerow([csv_cell(value) for value in entry.model_dump().values()])
    return out.getvalue()
