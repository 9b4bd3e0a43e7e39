"""catalog text index: a GIN index over records' title and description for PostgreSQL full-text search

The index is over an expression (``to_tsvector`` of the text), which SQLAlchemy's table metadata does not
describe; it exists on PostgreSQL only (SQLite's text index is the FTS5 table ``catalog.backends`` makes)
and ``migrate.include_object`` keeps autogenerate from reading it as a difference.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 00:30:00

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_catalog_records_text"
# the same expression ``catalog.backends.text_search`` ranks with, so the planner uses the index
DOCUMENT = "to_tsvector('english'::regconfig, title || ' ' || description)"


def upgrade() -> None:
    """Upgrade schema."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX IF NOT EXISTS {NAME} ON catalog_records USING gin (({DOCUMENT}))")


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {NAME}")
