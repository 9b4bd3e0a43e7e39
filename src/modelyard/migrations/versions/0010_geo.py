"""geo: areas of interest, scenes (STAC items), geo runs, counters

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 00:04:50.976657

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "aois",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("geometry", sa.JSON(), nullable=False),
        sa.Column("min_lon", sa.Float(), nullable=False),
        sa.Column("min_lat", sa.Float(), nullable=False),
        sa.Column("max_lon", sa.Float(), nullable=False),
        sa.Column("max_lat", sa.Float(), nullable=False),
        sa.Column("target_resolution", sa.Float(), nullable=False),
        sa.Column("wavelengths", sa.JSON(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aois")),
    )
    with op.batch_alter_table("aois", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_aois_model"), ["model"], unique=False)

    op.create_table(
        "geo_counters",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_geo_counters")),
    )
    op.create_table(
        "scenes",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("collection", sa.String(length=300), nullable=True),
        sa.Column("stac_id", sa.String(length=300), nullable=False),
        sa.Column("item", sa.JSON(), nullable=False),
        sa.Column("geometry", sa.JSON(), nullable=False),
        sa.Column("min_lon", sa.Float(), nullable=False),
        sa.Column("min_lat", sa.Float(), nullable=False),
        sa.Column("max_lon", sa.Float(), nullable=False),
        sa.Column("max_lat", sa.Float(), nullable=False),
        sa.Column("datetime", sa.DateTime(timezone=True), nullable=True),
        sa.Column("gsd", sa.Float(), nullable=True),
        sa.Column("bands", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scenes")),
        sa.UniqueConstraint("collection", "stac_id", name=op.f("uq_scenes_collection")),
    )
    with op.batch_alter_table("scenes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_scenes_datetime"), ["datetime"], unique=False)

    op.create_table(
        "geo_runs",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=True),
        sa.Column("aoi_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("scene_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("claimed_by", sa.String(length=100), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["aoi_id"], ["aois.id"], name=op.f("fk_geo_runs_aoi_id_aois")),
        sa.ForeignKeyConstraint(["scene_id"], ["scenes.id"], name=op.f("fk_geo_runs_scene_id_scenes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_geo_runs")),
        sa.UniqueConstraint("model", "aoi_id", "scene_id", name=op.f("uq_geo_runs_model")),
    )
    with op.batch_alter_table("geo_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_geo_runs_aoi_id"), ["aoi_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_geo_runs_scene_id"), ["scene_id"], unique=False)
        batch_op.create_index("ix_geo_runs_state_created", ["state", "created_at"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("geo_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_geo_runs_state_created")
        batch_op.drop_index(batch_op.f("ix_geo_runs_scene_id"))
        batch_op.drop_index(batch_op.f("ix_geo_runs_aoi_id"))

    op.drop_table("geo_runs")
    with op.batch_alter_table("scenes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scenes_datetime"))

    op.drop_table("scenes")
    op.drop_table("geo_counters")
    with op.batch_alter_table("aois", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_aois_model"))

    op.drop_table("aois")
