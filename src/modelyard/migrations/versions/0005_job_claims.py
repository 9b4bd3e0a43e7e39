"""job claims: queued jobs and chunks are claimed by the workers' dispatchers; small chunk outputs
kept in their row (joins the jobs and pipelines branches)

Revision ID: 0005
Revises: 0003, 0004
Create Date: 2026-11-24 15:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = ("0003", "0004")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("batch_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_jobs_batch_id", ["batch_id"], unique=False)
    with op.batch_alter_table("job_chunks") as batch:
        batch.add_column(sa.Column("batch_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("output_inline", sa.LargeBinary(), nullable=True))
        batch.create_index("ix_job_chunks_batch_id", ["batch_id"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("job_chunks") as batch:
        batch.drop_index("ix_job_chunks_batch_id")
        batch.drop_column("output_inline")
        batch.drop_column("claimed_at")
        batch.drop_column("batch_id")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_batch_id")
        batch.drop_column("claimed_at")
        batch.drop_column("batch_id")
