"""customer views: UserView (user_view, with user_orders and user_categories behind it) and
UserStatistics (customer_stats, customer_days)

Revision ID: 0003
Revises: 0002
Created: 2026-12-05 09:07:45.610529

New tables only, empty: the projector fills them as it reads on, which is from its checkpoint,
so the customers and orders projected before this revision are missing from them until
``make rebuild-projections`` (docs/events-and-cqrs.md).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customer_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("new_customers", sa.Integer(), nullable=False),
        sa.Column("last_ordered", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day"),
    )
    op.create_table(
        "customer_stats",
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("registered", sa.Integer(), nullable=False),
        sa.Column("buyers", sa.Integer(), nullable=False),
        sa.Column("repeat_buyers", sa.Integer(), nullable=False),
        sa.Column("completed_orders", sa.Integer(), nullable=False),
        sa.Column("completed_cents", sa.BigInteger(), nullable=False),
        sa.Column("latest_day", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("scope"),
    )
    op.create_table(
        "user_categories",
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "category"),
    )
    op.create_table(
        "user_orders",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("points_awarded", sa.Integer(), nullable=False),
        sa.Column("points_revoked", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_table(
        "user_view",
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("registered", sa.Boolean(), nullable=False),
        sa.Column("guest", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("erased", sa.Boolean(), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("orders_by_status", sa.JSON(), nullable=False),
        sa.Column("completed_orders", sa.Integer(), nullable=False),
        sa.Column("lifetime_spend_cents", sa.BigInteger(), nullable=False),
        sa.Column("loyalty_points", sa.Integer(), nullable=False),
        sa.Column("last_order_id", sa.String(length=64), nullable=True),
        sa.Column("last_order_status", sa.String(length=32), nullable=True),
        sa.Column("last_order_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("favourite_categories", sa.JSON(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id"),
    )


def downgrade() -> None:
    op.drop_table("user_view")
    op.drop_table("user_orders")
    op.drop_table("user_categories")
    op.drop_table("customer_stats")
    op.drop_table("customer_days")
