"""traceparent

Revision ID: 0003
Revises: 0002
Created: 2026-12-06 12:00:00

Each event may carry the W3C traceparent of the append that stored it (tracing on), from which
the projector, in another process, continues the order's trace (cloudmart/tracing.py).
Nullable: the events stored before, and any stored with tracing off, have none.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("traceparent", sa.String(length=55), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("traceparent")
