"""Catalog fixtures: an app client (batches of bound pipelines run in this process with ``drain``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelyard.app import create_app
from modelyard.settings import Settings
from tests import pgvector_server as pgvector_server_module
from tests.conftest import ADMIN_KEY


@pytest.fixture
def api(private_settings: Settings) -> Iterator[Any]:
    """A client of a fresh app; ``api.ctx`` is its context."""
    settings = private_settings.model_copy(update={"pipeline_claim_timeout_seconds": 0.0})
    app = create_app(settings)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        client.ctx = app.state.ctx  # type: ignore[attr-defined]
        yield client


def make_collection(api: TestClient, name: str = "works", **body: Any) -> dict[str, Any]:
    resp = api.post("/api/v1/collections", json={"name": name, **body})
    assert resp.status_code == 201, resp.text
    out: dict[str, Any] = resp.json()
    return out


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[Any]:
    """PostgreSQL with pgvector, once per session (``tests.pgvector_server``)."""
    with pgvector_server_module.running() as server:
        yield server


@pytest.fixture
def pgvector_settings(tmp_path: Path, pgvector_server: Any) -> Iterator[Settings]:
    """Settings of a test on its own database of the pgvector server."""
    with pgvector_server_module.database(pgvector_server) as url:
        yield Settings(
            data_dir=tmp_path / "data",
            database_url=url,
            admin_key=ADMIN_KEY,
            log_to_file=False,
            worker=False,
            _env_file=None,  # type: ignore[call-arg]
        )
