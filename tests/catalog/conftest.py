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
from tests.conftest import ADMIN_KEY, fresh_database

# vector search tests that also run on PostgreSQL with pgvector (the database holds the vectors there)
WITH_PGVECTOR = pytest.mark.parametrize("database_url", ["sqlite", "postgresql", "pgvector"], indirect=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The root fixture's databases, and ``pgvector`` for tests marked ``WITH_PGVECTOR``: a fresh
    database on the session's PostgreSQL with pgvector (migrated by the app that opens it)."""
    if request.param == "pgvector":
        with pgvector_server_module.database(request.getfixturevalue("pgvector_server")) as url:
            yield url
        return
    with fresh_database(request, tmp_path) as url:
        yield url


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
