"""geo runs: command models, run tokens, predictions

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 00:09:32.893013

Command models (``models.kind``, ``model_versions.command``), each geo run's single-use callback token
and the predictions runs report. Revises 0010 (geo-core's tables, which the new ones reference).

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "geo_predictions",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=True),
        sa.Column("aoi_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("scene_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("uri", sa.String(length=500), nullable=False),
        sa.Column("item", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("min_lon", sa.Float(), nullable=False),
        sa.Column("min_lat", sa.Float(), nullable=False),
        sa.Column("max_lon", sa.Float(), nullable=False),
        sa.Column("max_lat", sa.Float(), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["geo_runs.id"], name=op.f("fk_geo_predictions_run_id_geo_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_geo_predictions")),
        sa.UniqueConstraint("run_id", name=op.f("uq_geo_predictions_run_id")),
    )
    with op.batch_alter_table("geo_predictions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_geo_predictions_aoi_id"), ["aoi_id"], unique=False)
        batch_op.create_index("ix_geo_predictions_model_created", ["model", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_geo_predictions_observed_at"), ["observed_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_geo_predictions_scene_id"), ["scene_id"], unique=False)

    op.create_table(
        "geo_run_tokens",
        sa.Column(
            "run_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["geo_runs.id"], name=op.f("fk_geo_run_tokens_run_id_geo_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_geo_run_tokens")),
    )
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("command", sa.JSON(), nullable=True))

    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=20), server_default="onnx", nullable=False))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_column("kind")

    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("command")

    op.drop_table("geo_run_tokens")
    with op.batch_alter_table("geo_predictions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_geo_predictions_scene_id"))
        batch_op.drop_index(batch_op.f("ix_geo_predictions_observed_at"))
        batch_op.drop_index("ix_geo_predictions_model_created")
        batch_op.drop_index(batch_op.f("ix_geo_predictions_aoi_id"))

    op.drop_table("geo_predictions")
