"""stage run counts: an index over (pipeline_id, stage, state) of stage runs, so a pipeline's per-stage
counts by state (its queue snapshot, on every pipeline page) are read from the index alone instead of
visiting every stage run row

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 01:35:00

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index(
        "ix_pipeline_stage_runs_counts",
        "pipeline_stage_runs",
        ["pipeline_id", "stage", "state"],
        unique=False,
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_pipeline_stage_runs_counts", table_name="pipeline_stage_runs")
