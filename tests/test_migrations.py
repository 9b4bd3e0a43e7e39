"""The migrations describe exactly the tables the code declares (Alembic autogenerate finds nothing)."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from modelyard.db import Base, make_engine
from modelyard.migrate import import_models, include_object, upgrade

pytestmark = pytest.mark.empty_database  # the migrations themselves run here, from nothing


def test_autogenerate_finds_no_difference_from_the_migrations(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        upgrade(engine)  # idempotent
        import_models()
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "include_object": include_object}
            )
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
