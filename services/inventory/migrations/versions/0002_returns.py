"""returns: the return consumer's choreography tables, and what each return restocked

Revision ID: 0002
Revises: 0001
Created: 2026-12-02 10:00:00

The return saga (docs/returns.md): the checkpoint, inbox, outbox and dead letters of
inventory's return consumer (services/choreography/schema.py), and each return's restock.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.choreography.schema import (
    create_choreography_tables_v1,
    drop_choreography_tables_v1,
)

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_choreography_tables_v1()
    op.create_table(
        "return_restocks",
        sa.Column("return_id", sa.String(length=36), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("unrestocked", sa.JSON(), nullable=True),
        sa.Column("restocked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unrestocked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("return_id"),
    )
    op.create_index("ix_return_restocks_order_id", "return_restocks", ["order_id"])


def downgrade() -> None:
    op.drop_index("ix_return_restocks_order_id", table_name="return_restocks")
    op.drop_table("return_restocks")
    drop_choreography_tables_v1()
