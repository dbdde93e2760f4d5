"""The audit log's tables: the entries, and the head of their chain."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from services.database import UtcDateTime


class AuditTable(SQLModel, registry=registry()):
    """Base of the audit log's tables: their own metadata, in their own database."""


class AuditEntryRow(AuditTable, table=True):
    """One recorded action. Never updated or deleted: no code path does, and on PostgreSQL (and
    SQLite) a trigger refuses it (migrations/versions/0001_initial_schema.py)."""

    __tablename__ = "audit_entries"

    sequence: int = Field(
        primary_key=True,
        sa_type=BigInteger().with_variant(Integer(), "sqlite"),
        sa_column_kwargs={"autoincrement": False},
    )
    """1, 2, 3...: given under the head's lock, never by the database, so a gap means a deletion."""
    occurred_at: datetime = Field(sa_type=UtcDateTime, index=True)
    actor_kind: str = Field(max_length=16)
    actor: str = Field(max_length=64, index=True)
    action: str = Field(max_length=200, index=True)
    resource: str | None = Field(default=None, max_length=200, index=True)
    request_id: str = Field(max_length=64)
    outcome: str = Field(max_length=64)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditHead(AuditTable, table=True):
    """The chain's last link, one row: appends lock it (serialising the chain), and ``verify``
    compares it with the last entry, so deleting entries from the end shows too."""

    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True, sa_column_kwargs={"autoincrement": False})
    sequence: int = Field(default=0, sa_type=BigInteger)
    hash: str = Field(max_length=64)
