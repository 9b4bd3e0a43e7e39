"""finished by state: indexes over (state, finished_at) of jobs and of pipeline stage runs, so the queue
page's last hour and the dashboard's finished-per-minute lines are read from an index, not a scan

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 11:45:00

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index("ix_jobs_state_finished", "jobs", ["state", "finished_at"], unique=False)
    op.create_index(
        "ix_pipeline_stage_runs_state_finished", "pipeline_stage_runs", ["state", "finished_at"], unique=False
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_pipeline_stage_runs_state_finished", table_name="pipeline_stage_runs")
    op.drop_index("ix_jobs_state_finished", table_name="jobs")
