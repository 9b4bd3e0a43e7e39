"""The context: typed resources made on first use, all released by one ``close()``."""

from __future__ import annotations

import gc
import sqlite3
import threading
from dataclasses import fields

import pytest
from sqlalchemy import text

from modelyard.app import build_context
from modelyard.context import Lazy
from modelyard.db import Database
from modelyard.settings import Settings


def test_close_releases_every_resource_made_and_the_context_can_be_used_again(settings: Settings) -> None:
    ctx = build_context(settings)
    client, pool = ctx.http.get(), ctx.io_pool.get()
    assert ctx.http.get() is client  # made once
    assert ctx.raw_cache.peek() is None  # never asked for: never made
    ctx.close()
    assert client.is_closed
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)  # shut down
    assert ctx.http.get() is not client and not ctx.http.get().is_closed
    with ctx.uow() as session:  # the database opens again on demand
        session.connection()
    ctx.close()


def test_close_releases_every_lazy_field_the_catalog_caches_included(settings: Settings) -> None:
    ctx = build_context(settings)
    caches = ctx.catalog.get()
    assert ctx.catalog in ctx.lazies()
    assert {id(lazy) for lazy in ctx.lazies()} == {
        id(getattr(ctx, f.name)) for f in fields(ctx) if isinstance(getattr(ctx, f.name), Lazy)
    }
    ctx.close()
    assert [lazy for lazy in ctx.lazies() if lazy.peek() is not None] == []
    assert ctx.catalog.get() is not caches  # made anew: nothing derived from the closed database is kept
    ctx.close()


def test_a_lazy_resource_is_made_once_whatever_the_threads() -> None:
    made: list[int] = []
    gate = threading.Barrier(8)

    def make() -> int:
        made.append(1)
        return len(made)

    lazy = Lazy(make)

    def ask() -> None:
        gate.wait()
        lazy.get()

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert made == [1] and lazy.get() == 1


def _closed(conn: object) -> bool:
    """Whether a driver connection (psycopg or sqlite3) was closed."""
    if hasattr(conn, "closed"):
        return bool(conn.closed)
    try:
        conn.execute("SELECT 1")  # type: ignore[attr-defined]
    except sqlite3.ProgrammingError:
        return True
    return False


def test_connections_used_across_close_are_closed_when_the_database_goes(settings: Settings) -> None:
    """A read running while ``close`` disposes of the engine (a stream's poll not yet cancelled) gives its
    connection back to a pool no longer in use, and a read just after ``close`` opens a new one: both are
    closed by the next ``close`` or when the database object goes, not left open."""
    db = Database(settings.resolved_database_url(), data_dir=settings.data_dir)
    held = db.sessions()
    held.execute(text("SELECT 1"))
    over_close = held.connection().connection.driver_connection
    db.close()
    held.close()  # back to the pool ``close`` took out of use
    assert not _closed(over_close)
    with db.uow() as late:
        after_close = late.connection().connection.driver_connection
        late.execute(text("SELECT 1"))
    assert not _closed(after_close)
    db.close()
    assert _closed(over_close)

    with db.uow() as late:
        after_close = late.connection().connection.driver_connection
        late.execute(text("SELECT 1"))
    del db, held, late
    gc.collect()
    assert _closed(after_close)
