"""returns: the return consumer's choreography tables

Revision ID: 0002
Revises: 0001
Created: 2026-12-02 10:00:00

The return saga (docs/returns.md): the checkpoint, inbox, outbox and dead letters of loyalty's
return consumer (services/choreography/schema.py). The points it revokes are account events.
"""

from collections.abc import Sequence

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


def downgrade() -> None:
    drop_choreography_tables_v1()
