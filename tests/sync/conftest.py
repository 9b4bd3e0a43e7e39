"""Sync fixtures: SQLite only (nothing here depends on the database's dialect)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """A fresh SQLite database."""
    return f"sqlite:///{tmp_path / 'modelyard.db'}"
