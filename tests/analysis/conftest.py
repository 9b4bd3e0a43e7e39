"""Analysis fixtures: the pipelines' in-process context (batches run in this thread), on SQLite only (the
image stages do nothing that depends on the database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipelines.conftest import api, ctx, pipeline_settings

__all__ = ["api", "ctx", "database_url", "pipeline_settings"]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """A fresh SQLite database."""
    return f"sqlite:///{tmp_path / 'modelyard.db'}"
