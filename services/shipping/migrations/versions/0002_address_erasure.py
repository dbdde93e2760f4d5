"""address erasure: the eraser's place in the event store, whose each order is, who was erased

Revision ID: 0002
Revises: 0001
Created: 2026-12-09 10:00:00.000000

The tables start empty and the eraser (services/shipping/erasure.py) reads the event store from
its beginning: customers erased before this revision have their shipments' addresses blanked
on its first pass.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erasure_subscription",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "order_customers",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("settled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )
    with op.batch_alter_table("order_customers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_order_customers_customer_id"), ["customer_id"], unique=False
        )

    op.create_table(
        "erased_customers",
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id"),
    )


def downgrade() -> None:
    op.drop_table("erased_customers")
    with op.batch_alter_table("order_customers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_order_customers_customer_id"))

    op.drop_table("order_customers")
    op.drop_table("erasure_subscription")
