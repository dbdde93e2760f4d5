"""correlation and causation ids

Revision ID: 0002
Revises: 0001
Created: 2026-12-02 10:00:00

Every event may say which business transaction it belongs to (``correlation_id``, a return's
id) and which event it reacts to (``causation_id``). Nullable: the events stored before, and
the order saga's, have neither.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("correlation_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("causation_id", sa.String(length=36), nullable=True))
    op.create_index("ix_events_correlation_id", "events", ["correlation_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_events_correlation_id", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("causation_id")
        batch.drop_column("correlation_id")
