"""Shared fixtures: a fresh database per test (SQLite file, or a new PostgreSQL database),
small ONNX models built on the spot, an app with an admin key, and a live server on a free port.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelyard.app import create_app
from modelyard.settings import Settings
from tests import onnx_models
from tests.pg import migrate_url, migrated_database, postgres_database

ADMIN_KEY = "test-admin-key-0123456789"
# For modules where the database is incidental to what they test (HTTP limits, protocol shapes, files,
# images): SQLite only. Whatever they read or write goes through the same ORM calls that the registry,
# jobs, pipelines, catalog and geo tests run on both databases.
sqlite_only = pytest.mark.sqlite_only


@pytest.hookimpl(tryfirst=True)  # before the fixture's own two params are applied
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``database_url`` is SQLite alone for tests marked ``sqlite_only`` (others in their module that use
    no database are left alone)."""
    marked = metafunc.definition.get_closest_marker("sqlite_only") is not None
    if marked and "database_url" in metafunc.fixturenames:
        metafunc.definition.add_marker(pytest.mark.parametrize("database_url", ["sqlite"], indirect=True))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "database_url" in getattr(item, "fixturenames", ()) and "[postgresql]" in item.nodeid:
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database the migrations brought to the newest schema, once per session, to copy."""
    path = tmp_path_factory.mktemp("template") / "modelyard.db"
    migrate_url(f"sqlite:///{path}")
    return path


@contextmanager
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """What ``database_url`` yields for ``request.param`` (``sqlite`` or ``postgresql``)."""
    empty = request.node.get_closest_marker("empty_database") is not None
    if request.param == "sqlite":
        path = tmp_path / "modelyard.db"
        if not empty:
            shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    with postgres_database() if empty else migrated_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test on SQLite and on PostgreSQL: a database no other test has used, already at the
    newest schema (a copy of a migrated template: the migrations run once, not once per test), or empty
    for tests marked ``empty_database``."""
    with fresh_database(request, tmp_path) as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings for one test: its own data dir and database, an admin key, no file logs."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        admin_key=ADMIN_KEY,
        log_to_file=False,
        worker=False,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """An in-process client of a fresh app, sending the admin key."""
    app = create_app(settings)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        yield c


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small ONNX models built once per session."""
    return onnx_models.build_all(tmp_path_factory.mktemp("onnx"))


def push_model(
    client: TestClient, path: Path, name: str, metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Register ``name`` and upload ``path`` as its next version; returns the version."""
    client.post("/api/v1/models", json={"name": name, "metadata": metadata or {}})
    with path.open("rb") as f:
        resp = client.post(
            f"/api/v1/models/{name}/versions", files={"file": (path.name, f, "application/octet-stream")}
        )
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


class LiveServer:
    """uvicorn serving an app on a free port in a background thread."""

    def __init__(self, app: Any):
        import uvicorn

        from tests.s3server import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        started = threading.Event()
        while not started.wait(0.01):
            if self.server.started:
                started.set()
            if not self.thread.is_alive():
                raise RuntimeError("live server failed to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(settings: Settings) -> Iterator[LiveServer]:
    """A real HTTP server on a free port, for clients that need a socket (tritonclient, websockets)."""
    with LiveServer(create_app(settings)) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """Endpoint URL of a real moto S3 server process shared by the session, with bucket ``BUCKET``."""
    from tests.s3server import s3_server

    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3_endpoint`` with dummy AWS credentials, region and allow-http set in the environment."""
    from tests.s3server import AWS_ENV

    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    return s3_endpoint


@pytest.fixture
def image_server() -> Iterator[Any]:
    """A local HTTP server of generated images (``/img/{i}.png``) that counts requests per path."""
    from tests.imageserver import ImageServer

    with ImageServer() as server:
        yield server


@pytest.fixture
def private_settings(settings: Settings) -> Settings:
    """``settings`` that let user URLs reach local addresses (for servers the test starts)."""
    return settings.model_copy(update={"allow_private_urls": True})


@pytest.fixture
def private_client(private_settings: Settings) -> Iterator[TestClient]:
    """Like ``client``, with ``private_settings``."""
    app = create_app(private_settings)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        yield c
