"""event paging: indexes that make every dashboard page of a pipeline independent of its size. Events
by (pipeline, created_at, id) and (pipeline, state, created_at, id), so a page of events newest first is a
seek from a keyset cursor (the second also counts events by state, replacing (pipeline, state)); the
queue index carries ``ready_at``, so a stage's oldest ready run is read from it; and a partial index of
the stage runs that have an error, so failures grouped by stage and type are read without a scan

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 03:50:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HAS_ERROR = sa.text("error_type IS NOT NULL")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index(
        "ix_pipeline_events_created", "pipeline_events", ["pipeline_id", "created_at", "id"], unique=False
    )
    op.create_index(
        "ix_pipeline_events_state_created",
        "pipeline_events",
        ["pipeline_id", "state", "created_at", "id"],
        unique=False,
    )
    op.drop_index("ix_pipeline_events_pipeline_state", table_name="pipeline_events")
    op.drop_index("ix_pipeline_stage_runs_queue", table_name="pipeline_stage_runs")
    op.create_index(
        "ix_pipeline_stage_runs_queue",
        "pipeline_stage_runs",
        ["state", "pipeline_id", "stage", "ready_at"],
        unique=False,
    )
    op.create_index(
        "ix_pipeline_stage_runs_errors",
        "pipeline_stage_runs",
        ["pipeline_id", "stage", "error_type", "finished_at", "state"],
        unique=False,
        sqlite_where=HAS_ERROR,
        postgresql_where=HAS_ERROR,
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_pipeline_stage_runs_errors", table_name="pipeline_stage_runs")
    op.drop_index("ix_pipeline_stage_runs_queue", table_name="pipeline_stage_runs")
    op.create_index(
        "ix_pipeline_stage_runs_queue", "pipeline_stage_runs", ["state", "pipeline_id", "stage"], unique=False
    )
    op.create_index(
        "ix_pipeline_events_pipeline_state", "pipeline_events", ["pipeline_id", "state"], unique=False
    )
    op.drop_index("ix_pipeline_events_state_created", table_name="pipeline_events")
    op.drop_index("ix_pipeline_events_created", table_name="pipeline_events")
