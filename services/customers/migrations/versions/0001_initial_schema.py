"""initial schema

Revision ID: 0001
Revises: (none)
Created: 2026-12-05 09:09:55.828677
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
        "customer_keys",
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    op.create_table(
        "customer_orders",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("registered", sa.Boolean(), nullable=False),
        sa.Column("opened", sa.Boolean(), nullable=False),
        sa.Column("mark", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )
    with op.batch_alter_table("customer_orders", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_customer_orders_customer_id"), ["customer_id"], unique=False
        )

    op.create_table(
        "customers",
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    op.create_table(
        "email_claims",
        sa.Column("email_hmac", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("email_hmac"),
    )
    with op.batch_alter_table("email_claims", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_email_claims_customer_id"), ["customer_id"], unique=False
        )

    op.create_table(
        "pending_events",
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("event", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "sequence"),
    )
    op.create_table(
        "service_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("service_secrets")
    op.drop_table("pending_events")
    with op.batch_alter_table("email_claims", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_email_claims_customer_id"))

    op.drop_table("email_claims")
    op.drop_table("customers")
    with op.batch_alter_table("customer_orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_orders_customer_id"))

    op.drop_table("customer_orders")
    op.drop_table("customer_keys")
