"""Catalog fixtures: an app client (batches of bound pipelines run in this process with ``drain``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelyard.app import create_app
from modelyard.settings import Settings
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
