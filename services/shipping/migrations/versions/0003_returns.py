"""returns: the return consumer's choreography tables, and the return parcels

Revision ID: 0003
Revises: 0002
Created: 2026-12-02 10:00:00

The return saga (docs/returns.md): the checkpoint, inbox, outbox and dead letters of shipping's
return consumer (services/choreography/schema.py), and each return's parcel.
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
        "return_shipments",
        sa.Column("return_id", sa.String(length=36), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=32), nullable=False),
        sa.Column("back_tracking_number", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("return_id"),
        sa.UniqueConstraint("label"),
        sa.UniqueConstraint("back_tracking_number"),
    )
    op.create_index("ix_return_shipments_order_id", "return_shipments", ["order_id"])


def downgrade() -> None:
    op.drop_index("ix_return_shipments_order_id", table_name="return_shipments")
    op.drop_table("return_shipments")
    drop_choreography_tables_v1()
