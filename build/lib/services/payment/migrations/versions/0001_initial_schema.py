"""initial schema

Revision ID: 0001
Revises: (none)
Created: 2026-11-25 09:06:20.775722
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "charges",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("payment_token", sa.String(length=64), nullable=False),
        sa.Column("provider_reference", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.Column("undo_reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_cents >= 0", name="amount_not_negative"),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_index("ix_charges_customer_id", "charges", ["customer_id"], unique=False)

    op.create_table(
        "refunds",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("provider_reference", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_cents > 0", name="amount_positive"),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["charges.order_id"],
        ),
        sa.PrimaryKeyConstraint("order_id"),
    )


def downgrade() -> None:
    op.drop_table("refunds")
    op.drop_index("ix_charges_customer_id", table_name="charges")

    op.drop_table("charges")
