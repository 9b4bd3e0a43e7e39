"""scenes without a collection: a partial unique index on stac_id where collection is null, so two posts
of the same collection-less item at the same time cannot both store it (NULLs are never equal in the
(collection, stac_id) unique key)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 03:50:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index(
        "uq_scenes_stac_id_without_collection",
        "scenes",
        ["stac_id"],
        unique=True,
        sqlite_where=sa.text("collection IS NULL"),
        postgresql_where=sa.text("collection IS NULL"),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("uq_scenes_stac_id_without_collection", table_name="scenes")
