"""A fresh PostgreSQL database per use, on the server at 127.0.0.1:5432 (trust auth).

Under CI (``CI=true``) an unreachable server fails the test; elsewhere the test is skipped, saying why.

Making and dropping a database costs the server a second or more on this machine (it syncs files), and
the suite makes hundreds. So ``migrated_database()`` takes its database from a ``DatabaseFactory``: one
thread of its own copies a template that the migrations brought to the newest schema once per test
session (``CREATE DATABASE ... TEMPLATE``) a couple of databases ahead of the tests, and drops each
database after its test, while the next test runs. Every test still gets a database nothing else has
touched; the migrations themselves are tested from an empty database (``postgres_database()``).
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager

import psycopg
import pytest

PG_HOST = os.environ.get("MODELYARD_TEST_PG_HOST", "127.0.0.1")
PG_ADMIN_DSN = f"host={PG_HOST} port=5432 dbname=test user=postgres connect_timeout=5"
AHEAD = 2  # databases made ready before a test asks for one


def url_of(name: str) -> str:
    return f"postgresql+psycopg://postgres@{PG_HOST}:5432/{name}"


def _fresh_name(kind: str = "t") -> str:
    return f"modelyard_{kind}_{uuid.uuid4().hex[:12]}"


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(PG_ADMIN_DSN, autocommit=True)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL at {PG_HOST}:5432 is required under CI and unreachable: {exc}")
        pytest.skip(f"PostgreSQL at {PG_HOST}:5432 is unreachable: {exc}")


def _drop(conn: psycopg.Connection[tuple[object, ...]], name: str) -> None:
    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def postgres_database() -> Iterator[str]:
    """Create an empty, uniquely named database, yield its SQLAlchemy URL, drop it afterwards."""
    name = _fresh_name()
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url_of(name)
    finally:
        with _admin() as conn:
            _drop(conn, name)


class DatabaseFactory:
    """Databases copied from one migrated template, made ahead and dropped behind on one thread.

    All of the server work (template, copies, drops) happens on that thread, in order; a test waits only
    when it asks for a database before the thread has one ready.
    """

    def __init__(self, migrate: Callable[[str], None], ahead: int = AHEAD) -> None:
        self._migrate = migrate
        self._ahead = ahead
        self._work: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._ready: list[Future[str]] = []
        self._template = _fresh_name("tmpl")
        self._thread = threading.Thread(target=self._serve, name="pg-databases", daemon=True)
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._closed = False

    def take(self) -> str:
        """The URL of a new database at the newest schema; give it back with ``give_back``."""
        if not self._thread.is_alive():
            with _admin() as probe:  # fail (CI) or skip here, in the test, if the server is away
                probe.execute("SELECT 1")
            self._thread.start()
            self._submit(self._make_template)
        while len(self._ready) < self._ahead + 1:
            self._ready.append(self._submit(self._copy))
        name = self._ready.pop(0).result(timeout=120)
        return url_of(name)

    def give_back(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._submit(lambda: self._run(lambda conn: _drop(conn, name)))

    def close(self) -> None:
        """Drop what is left (ready copies, the template) and stop the thread."""
        if self._closed or not self._thread.is_alive():
            return
        self._closed = True
        for ready in self._ready:
            self._submit(lambda ready=ready: self._run(lambda conn: _drop(conn, ready.result())))
        self._submit(lambda: self._run(lambda conn: _drop(conn, self._template)))
        self._work.put(None)
        self._thread.join(timeout=120)

    def _submit(self, fn: Callable[[], object]) -> Future[object]:
        done: Future[object] = Future()

        def job() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

        self._work.put(job)
        return done

    def _serve(self) -> None:
        while (job := self._work.get()) is not None:
            job()
        if self._conn is not None:
            self._conn.close()

    def _run(self, fn: Callable[[psycopg.Connection[tuple[object, ...]]], object]) -> object:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(PG_ADMIN_DSN, autocommit=True)
        return fn(self._conn)

    def _make_template(self) -> None:
        self._run(lambda conn: conn.execute(f'CREATE DATABASE "{self._template}"'))
        self._migrate(url_of(self._template))  # disposes of its engine: a template takes no connections

    def _copy(self) -> str:
        name = _fresh_name()
        self._run(lambda conn: conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"'))
        return name


_factory: DatabaseFactory | None = None


def migrate_url(url: str) -> None:
    """Bring the database at ``url`` to the newest schema."""
    from modelyard.db import make_engine
    from modelyard.migrate import upgrade

    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


@contextmanager
def migrated_database() -> Iterator[str]:
    """A new database at the newest schema, nothing else has used; dropped after (in the background)."""
    global _factory
    if _factory is None:
        _factory = DatabaseFactory(migrate_url)
        atexit.register(_factory.close)
    url = _factory.take()
    try:
        yield url
    finally:
        _factory.give_back(url)
