"""returns: the return consumer's choreography tables, and each return's refund

Revision ID: 0003
Revises: 0002
Created: 2026-12-02 10:00:00

The return saga (docs/returns.md): the checkpoint, inbox, outbox and dead letters of payment's
return consumer (services/choreography/schema.py), and each return's refund.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.choreography.schema import (
    create_choreography_tables_v1,
    drop_choreography_tables_v1,
)

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_choreography_tables_v1()
    op.create_table(
        "return_refunds",
        sa.Column("return_id", sa.String(length=36), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider_reference", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_cents >= 0", name="return_refund_not_negative"),
        sa.PrimaryKeyConstraint("return_id"),
    )
    op.create_index("ix_return_refunds_order_id", "return_refunds", ["order_id"])


def downgrade() -> None:
    op.drop_index("ix_return_refunds_order_id", table_name="return_refunds")
    op.drop_table("return_refunds")
    drop_choreography_tables_v1()
