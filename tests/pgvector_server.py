"""A PostgreSQL with pgvector for the catalog's scale-out tests: ``pgserver`` 0.1.4 (a PyPI package that
bundles PostgreSQL 16 and pgvector 0.6.2) started once per session in a folder under the session's temp dir,
listening on a unix socket there; each use gets a fresh database.

Under CI (``CI=true``) a server that cannot start fails the test; elsewhere the test is skipped, saying
why (never silently).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql


@contextmanager
def running(settings: dict[str, str] | None = None) -> Iterator[Any]:
    """The server, in a new folder under the system temp dir (pytest's own is closed to other users, and
    as root the server runs as a ``pgserver`` OS user), restarted with ``settings`` if any (PostgreSQL
    parameters such as ``shared_buffers``); stopped and removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="modelyard-pgvector-"))
    try:
        server = start(folder)
        try:
            if settings:
                configure(server, folder, settings)
            yield server
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def start(folder: Path) -> Any:
    """Start the server in ``folder``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: no XDG_RUNTIME_DIR in a container
            import pgserver

            return pgserver.get_server(folder, cleanup_mode="delete")
    except Exception as exc:  # the package missing or the server refusing to start
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL with pgvector (pgserver) is required under CI: {exc!r}")
        pytest.skip(f"PostgreSQL with pgvector (pgserver) could not start: {exc!r}")


def configure(server: Any, folder: Path, settings: dict[str, str]) -> None:
    """Set PostgreSQL parameters on ``server`` and restart it (``pg_ctl`` keeps its start options)."""
    from pgserver._commands import pg_ctl

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        for name, value in settings.items():
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
    pg_ctl(["-w", "restart"], pgdata=folder, user=server.system_user, timeout=60)


@contextmanager
def database(server: Any) -> Iterator[str]:
    """A fresh database on ``server``: its SQLAlchemy URL, dropped afterwards."""
    name = f"modelyard_v_{uuid.uuid4().hex[:12]}"
    admin = server.get_uri()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    socket_dir = admin.split("host=", 1)[1]
    try:
        yield f"postgresql+psycopg://postgres@/{name}?host={socket_dir}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
