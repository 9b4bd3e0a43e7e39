"""Schema migrations (Alembic), run on start; idempotent."""

from __future__ import annotations

import importlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

# Every module that defines tables; Alembic's env and the tests import them through this list.
MODEL_MODULES = [
    "modelyard.auth",
    "modelyard.registry.models",
    "modelyard.durable.workers",
    "modelyard.durable.log",
    "modelyard.jobs.models",
    "modelyard.pipelines.models",
    "modelyard.catalog.models",
    "modelyard.notify.models",
    "modelyard.geo.models",
    "modelyard.geo.run_models",
]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# What the database holds beyond the tables' metadata, made by migrations or at run time on one dialect:
# the catalog's PostgreSQL text index (an expression index) and its pgvector tables and their indexes.
UNDECLARED = ("ix_catalog_records_text", "catalog_pgvector")


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic's filter for autogenerate: leave out the objects the metadata does not declare on purpose
    (``UNDECLARED``), so a comparison reports real differences only."""
    return not (reflected and compare_to is None and (name or "").startswith(UNDECLARED))


def import_models() -> None:
    """Import every table module so ``Base.metadata`` is complete."""
    for name in MODEL_MODULES:
        importlib.import_module(name)


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at our migrations and ``url``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the database at ``engine`` to the newest schema."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")
