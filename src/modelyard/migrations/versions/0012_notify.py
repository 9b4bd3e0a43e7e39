"""notify: subscriptions to model topics, their deliveries, the fan-out's cursor in the event log

A topic is its model (no table, nothing to backfill). The cursor starts at the log's head: the events
already written went out before any subscription existed.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 00:20:00

"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "notify_subscriptions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("model_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("target", sa.String(length=2000), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=True),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("since_event", BigId, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("secret_rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_notify_subscriptions_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_subscriptions")),
    )
    with op.batch_alter_table("notify_subscriptions") as batch:
        batch.create_index(batch.f("ix_notify_subscriptions_model_id"), ["model_id"], unique=False)
    op.create_table(
        "notify_deliveries",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("subscription_id", sa.String(length=32), nullable=False),
        sa.Column("event_id", BigId, nullable=False),
        sa.Column("event_type", sa.String(length=50), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claim_id", sa.String(length=32), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("response_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["notify_subscriptions.id"],
            name=op.f("fk_notify_deliveries_subscription_id_notify_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_deliveries")),
        sa.UniqueConstraint("subscription_id", "event_id", name="uq_notify_deliveries_subscription_event"),
    )
    with op.batch_alter_table("notify_deliveries") as batch:
        batch.create_index(batch.f("ix_notify_deliveries_claim_id"), ["claim_id"], unique=False)
        batch.create_index(
            "ix_notify_deliveries_state_next_attempt_at", ["state", "next_attempt_at"], unique=False
        )
    cursors = op.create_table(
        "notify_cursors",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("position", BigId, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claim_id", sa.String(length=32), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_notify_cursors")),
    )
    head = op.get_bind().scalar(sa.text("SELECT COALESCE(MAX(id), 0) FROM event_log"))
    op.bulk_insert(cursors, [{"name": "deliveries", "position": int(head or 0), "due_at": datetime.now(UTC)}])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("notify_cursors")
    op.drop_table("notify_deliveries")
    op.drop_table("notify_subscriptions")
