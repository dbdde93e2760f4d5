"""initial schema

Revision ID: 0001
Revises: (none)
Created: 2026-11-25 09:28:40.126513
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
        "checkpoints",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("lag_ms", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "failures_by_reason",
        sa.Column("failure_type", sa.String(length=64), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("failure_type"),
    )
    op.create_table(
        "order_summary",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("total_cents", sa.Integer(), nullable=True),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("failure_type", sa.String(length=64), nullable=True),
        sa.Column("failure_message", sa.String(length=500), nullable=True),
        sa.Column("cancel_reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )
    with op.batch_alter_table("order_summary", schema=None) as batch_op:
        batch_op.create_index(
            "ix_order_summary_customer", ["customer_id", "created_at"], unique=False
        )
        batch_op.create_index("ix_order_summary_listing", ["created_at", "order_id"], unique=False)
        batch_op.create_index("ix_order_summary_status", ["status", "created_at"], unique=False)

    op.create_table(
        "product_search",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("price_cents", sa.Integer(), nullable=False),
        sa.Column("received", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Integer(), nullable=False),
        sa.Column("sold", sa.Integer(), nullable=False),
        sa.Column("stock_on_hand", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("sku"),
    )
    op.create_index("ix_product_search_category", "product_search", ["category"], unique=False)
    op.create_index(
        "ix_product_search_price_cents", "product_search", ["price_cents"], unique=False
    )

    op.create_table(
        "sales_by_product",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("units_sold", sa.Integer(), nullable=False),
        sa.Column("revenue_cents", sa.Integer(), nullable=False),
        sa.Column("units_released", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("sku"),
    )


def downgrade() -> None:
    op.drop_table("sales_by_product")
    op.drop_index("ix_product_search_price_cents", table_name="product_search")
    op.drop_index("ix_product_search_category", table_name="product_search")

    op.drop_table("product_search")
    with op.batch_alter_table("order_summary", schema=None) as batch_op:
        batch_op.drop_index("ix_order_summary_status")
        batch_op.drop_index("ix_order_summary_listing")
        batch_op.drop_index("ix_order_summary_customer")

    op.drop_table("order_summary")
    op.drop_table("failures_by_reason")
    op.drop_table("checkpoints")
