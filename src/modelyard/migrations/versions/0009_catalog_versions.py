"""catalog: the current version of each producer per collection, re-inferences, re-harvesting re-run events

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 00:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "catalog_versions",
        sa.Column("collection_id", sa.String(length=32), nullable=False),
        sa.Column("producer", sa.String(length=200), nullable=False),
        sa.Column("current", sa.String(length=100), nullable=False),
        sa.Column("previous", sa.String(length=100), nullable=True),
        sa.Column("switched_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["catalog_collections.id"],
            name=op.f("fk_catalog_versions_collection_id_catalog_collections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("collection_id", "producer", name=op.f("pk_catalog_versions")),
    )
    op.create_table(
        "catalog_reinferences",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("collection_id", sa.String(length=32), nullable=False),
        sa.Column("producer", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("from_version", sa.String(length=100), nullable=True),
        sa.Column("by_stage", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["catalog_collections.id"],
            name=op.f("fk_catalog_reinferences_collection_id_catalog_collections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_reinferences")),
    )
    with op.batch_alter_table("catalog_reinferences", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_catalog_reinferences_collection_id"), ["collection_id"], unique=False
        )
    with op.batch_alter_table("catalog_record_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("harvested_runs", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("reinference_id", sa.String(length=32), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_catalog_record_events_reinference_id"), ["reinference_id"], unique=False
        )
    with op.batch_alter_table("catalog_record_events", schema=None) as batch_op:
        batch_op.alter_column("harvested_runs", server_default=None)
    # what was harvested before counted one run; the versions current before are the aliases
    events = sa.table(
        "catalog_record_events", sa.column("harvested", sa.Boolean), sa.column("harvested_runs")
    )
    op.execute(events.update().where(events.c.harvested.is_(True)).values(harvested_runs=1))
    inferences = sa.table(
        "catalog_inferences",
        sa.column("collection_id"),
        sa.column("producer"),
        sa.column("version"),
        sa.column("current", sa.Boolean),
    )
    versions = sa.table(
        "catalog_versions",
        sa.column("collection_id"),
        sa.column("producer"),
        sa.column("current"),
        sa.column("switched_at"),
    )
    newest = (
        sa.select(
            inferences.c.collection_id,
            inferences.c.producer,
            sa.func.max(inferences.c.version),
            sa.func.current_timestamp(),
        )
        .where(inferences.c.current.is_(True))
        .group_by(inferences.c.collection_id, inferences.c.producer)
    )
    op.execute(versions.insert().from_select(["collection_id", "producer", "current", "switched_at"], newest))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("catalog_record_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_catalog_record_events_reinference_id"))
        batch_op.drop_column("reinference_id")
        batch_op.drop_column("harvested_runs")
    with op.batch_alter_table("catalog_reinferences", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_catalog_reinferences_collection_id"))
    op.drop_table("catalog_reinferences")
    op.drop_table("catalog_versions")
