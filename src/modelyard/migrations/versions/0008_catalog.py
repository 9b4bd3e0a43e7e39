"""catalog: collections, records, bindings to pipelines, record events, inferences, fields

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 21:48:54.717409

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "catalog_collections",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("deletions", sa.Integer(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_collections")),
        sa.UniqueConstraint("name", name=op.f("uq_catalog_collections_name")),
    )
    op.create_table(
        "catalog_bindings",
        sa.Column("collection_id", sa.String(length=32), nullable=False),
        sa.Column("pipeline", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["catalog_collections.id"],
            name=op.f("fk_catalog_bindings_collection_id_catalog_collections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("collection_id", "pipeline", name=op.f("pk_catalog_bindings")),
    )
    op.create_table(
        "catalog_fields",
        sa.Column("collection_id", sa.String(length=32), nullable=False),
        sa.Column("path", sa.String(length=300), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["catalog_collections.id"],
            name=op.f("fk_catalog_fields_collection_id_catalog_collections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("collection_id", "path", name=op.f("pk_catalog_fields")),
    )
    op.create_table(
        "catalog_records",
        sa.Column(
            "pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("collection_id", sa.String(length=32), nullable=False),
        sa.Column("record_id", sa.String(length=300), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=2000), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["catalog_collections.id"],
            name=op.f("fk_catalog_records_collection_id_catalog_collections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_catalog_records")),
        sa.UniqueConstraint("collection_id", "record_id", name=op.f("uq_catalog_records_collection_id")),
    )
    op.create_table(
        "catalog_inferences",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("record_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("collection_id", sa.String(length=32), nullable=False),
        sa.Column("producer", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("current", sa.Boolean(), nullable=False),
        sa.Column("event_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_pk"],
            ["catalog_records.pk"],
            name=op.f("fk_catalog_inferences_record_pk_catalog_records"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_inferences")),
        sa.UniqueConstraint("record_pk", "producer", "version", name=op.f("uq_catalog_inferences_record_pk")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("catalog_inferences", schema=None) as batch_op:
        batch_op.create_index(
            "ix_catalog_inferences_field", ["collection_id", "producer", "id"], unique=False
        )

    op.create_table(
        "catalog_vectors",
        sa.Column("inference_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("path", sa.String(length=300), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["inference_id"],
            ["catalog_inferences.id"],
            name=op.f("fk_catalog_vectors_inference_id_catalog_inferences"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("inference_id", "path", name=op.f("pk_catalog_vectors")),
    )
    op.create_table(
        "catalog_record_events",
        sa.Column("event_id", sa.String(length=32), nullable=False),
        sa.Column("record_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("collection_id", sa.String(length=32), nullable=False),
        sa.Column("pipeline", sa.String(length=100), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("harvested", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_pk"],
            ["catalog_records.pk"],
            name=op.f("fk_catalog_record_events_record_pk_catalog_records"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_catalog_record_events")),
    )
    with op.batch_alter_table("catalog_record_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_catalog_record_events_pending", ["harvested", "collection_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_catalog_record_events_record_pk"), ["record_pk"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("catalog_record_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_catalog_record_events_record_pk"))
        batch_op.drop_index("ix_catalog_record_events_pending")

    op.drop_table("catalog_record_events")
    with op.batch_alter_table("catalog_inferences", schema=None) as batch_op:
        batch_op.drop_index("ix_catalog_inferences_field")

    op.drop_table("catalog_vectors")
    op.drop_table("catalog_inferences")
    op.drop_table("catalog_records")
    op.drop_table("catalog_fields")
    op.drop_table("catalog_bindings")
    op.drop_table("catalog_collections")
