"""initial schema: the entries, the head of their chain, and the triggers that keep them
append-only

Revision ID: 0001
Revises: (none)
Created: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64  # services/audit/chain.py: the first entry's prev_hash

# The database refuses what the code never does: changing or removing an entry, and moving the
# head other than one entry forward. (Whoever owns the tables can drop a trigger: the hash chain
# and `make audit-verify` are what show a change made so.)
POSTGRES = [
    """
    CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END $$
    """,
    """
    CREATE FUNCTION audit_head_advance() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.id = OLD.id AND NEW.sequence = OLD.sequence + 1 THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'the audit log''s head only advances, one entry at a time'
            USING ERRCODE = 'integrity_constraint_violation';
    END $$
    """,
    "CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries "
    "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()",
    "CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()",
    "CREATE TRIGGER audit_head_advances BEFORE UPDATE ON audit_head "
    "FOR EACH ROW EXECUTE FUNCTION audit_head_advance()",
    "CREATE TRIGGER audit_head_kept BEFORE DELETE ON audit_head "
    "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()",
    "CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()",
]
SQLITE = [
    "CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries BEGIN "
    "SELECT RAISE(ABORT, 'the audit log is append-only: UPDATE on audit_entries refused'); END",
    "CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries BEGIN "
    "SELECT RAISE(ABORT, 'the audit log is append-only: DELETE on audit_entries refused'); END",
    "CREATE TRIGGER audit_head_advances BEFORE UPDATE ON audit_head "
    "WHEN NEW.id != OLD.id OR NEW.sequence != OLD.sequence + 1 BEGIN "
    "SELECT RAISE(ABORT, 'the audit log''s head only advances, one entry at a time'); END",
    "CREATE TRIGGER audit_head_kept BEFORE DELETE ON audit_head BEGIN "
    "SELECT RAISE(ABORT, 'the audit log is append-only: DELETE on audit_head refused'); END",
]


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column(
            "sequence",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=200), nullable=False),
        sa.Column("resource", sa.String(length=200), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=64), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("sequence"),
    )
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        for column in ("action", "actor", "occurred_at", "resource"):
            batch_op.create_index(f"ix_audit_entries_{column}", [column], unique=False)

    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(head, [{"id": 1, "sequence": 0, "hash": GENESIS}])
    for statement in POSTGRES if op.get_bind().dialect.name == "postgresql" else SQLITE:
        op.execute(statement)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.drop_table("audit_head")  # with its triggers
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        for column in ("action", "actor", "occurred_at", "resource"):
            batch_op.drop_index(f"ix_audit_entries_{column}")
    op.drop_table("audit_entries")
    if postgres:
        op.execute("DROP FUNCTION audit_head_advance()")
        op.execute("DROP FUNCTION audit_refuse_change()")
