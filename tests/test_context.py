"""The context: typed resources made on first use, all released by one ``close()``."""

from __future__ import annotations

import threading
from dataclasses import fields

import pytest

from modelyard.app import build_context
from modelyard.context import Lazy
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
