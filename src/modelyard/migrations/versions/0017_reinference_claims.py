"""re-inference claims: the worker computing a re-inference's steps in place holds it (claimed_by,
claimed_at), so two workers do not compute the same records

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 11:40:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("catalog_reinferences") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("catalog_reinferences") as batch:
        batch.drop_column("claimed_at")
        batch.drop_column("claimed_by")
