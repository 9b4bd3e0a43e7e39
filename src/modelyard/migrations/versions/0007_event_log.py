"""event log: the durable outbox every part appends to and every event stream reads

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 21:50:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "event_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("topic", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_log")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("event_log") as batch:
        batch.create_index(batch.f("ix_event_log_created_at"), ["created_at"], unique=False)
        batch.create_index(batch.f("ix_event_log_subject"), ["subject"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("event_log")
