"""product ratings: per-customer ratings, and their count and average in the product search

Revision ID: 0002
Revises: 0001
Created: 2026-12-02 10:00:00.000000

The rating columns start at "nobody rated it": no ProductRated event existed before this
revision, so the projection stays exactly what a rebuild would make.
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
        "product_ratings",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("stars", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("sku", "customer_id"),
    )
    with op.batch_alter_table("product_search", schema=None) as batch_op:
        # A server default fills the rows already there; the model sets the value itself.
        batch_op.add_column(
            sa.Column("rating_count", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("rating_total", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("rating_average", sa.Float(), nullable=True))
        batch_op.create_index("ix_product_search_rating_average", ["rating_average"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("product_search", schema=None) as batch_op:
        batch_op.drop_index("ix_product_search_rating_average")
        batch_op.drop_column("rating_average")
        batch_op.drop_column("rating_total")
        batch_op.drop_column("rating_count")
    op.drop_table("product_ratings")
