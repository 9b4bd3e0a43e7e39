"""Every piece of dialect-specific SQL of the catalog, in one place: inserts that skip rows already
there, and the full-text index over records' title and description. SQLite (the embedded default) keeps
an FTS5 table (porter stemming, bm25 rank) written beside each record; PostgreSQL ranks ``to_tsvector``
against ``plainto_tsquery`` (English stemming both sides, ``ts_rank``), computed over the collection's
rows through a GIN index over that expression (migration 0013), so it needs no table of its own.

The FTS5 table is made on first use rather than by a migration: its shadow tables are not SQLAlchemy
tables, and keeping them out of the migrations keeps autogenerate's comparison exact. A table made on an
existing database is filled from the records at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, func, literal_column, select, text
from sqlalchemy.orm import Session

from modelyard import db
from modelyard.catalog.models import Record

FTS = "catalog_text"
_ready: set[str] = set()  # databases (by URL) whose FTS5 table is known to exist
WORD = re.compile(r"\w+", re.UNICODE)


def insert_new(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows``, skipping any whose key is already there (another process may add it meanwhile)."""
    db.insert_new(session, table, list(rows))


_sqlite = db.embedded_session  # the FTS5 table exists only in the embedded database


def _ensure(session: Session) -> None:
    url = session.get_bind().engine.url.render_as_string()
    if url in _ready:
        return
    exists = session.execute(
        text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :n"), {"n": FTS}
    ).first()
    if exists is None:
        session.execute(
            text(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS} USING fts5("
                "title, description, collection_id UNINDEXED, tokenize = 'porter unicode61')"
            )
        )
        session.execute(
            text(
                f"INSERT INTO {FTS} (rowid, title, description, collection_id) "
                "SELECT pk, title, description, collection_id FROM catalog_records"
            )
        )
        return  # known only once seen committed: this transaction may still roll back
    _ready.add(url)


def index_text(session: Session, rows: Sequence[tuple[int, str, str, str]]) -> None:
    """(Re)index the text of records given as (pk, collection id, title, description)."""
    if not rows or not _sqlite(session):
        return
    _ensure(session)
    pks = [{"pk": r[0]} for r in rows]
    session.execute(text(f"DELETE FROM {FTS} WHERE rowid = :pk"), pks)
    session.execute(
        text(f"INSERT INTO {FTS} (rowid, collection_id, title, description) VALUES (:pk, :c, :t, :d)"),
        [{"pk": pk, "c": c, "t": t, "d": d} for pk, c, t, d in rows],
    )


def forget_text(session: Session, *, pks: Sequence[int] = (), collection_id: str | None = None) -> None:
    """Drop records (or a whole collection) from the text index."""
    if not _sqlite(session):
        return
    _ensure(session)
    if pks:
        session.execute(text(f"DELETE FROM {FTS} WHERE rowid = :pk"), [{"pk": pk} for pk in pks])
    if collection_id is not None:
        session.execute(text(f"DELETE FROM {FTS} WHERE collection_id = :c"), {"c": collection_id})


def words(query: str) -> list[str]:
    """The words of a text query (punctuation and query syntax are not operators here)."""
    return WORD.findall(query)


def _document() -> Any:
    """``to_tsvector`` of a record's text, spelled exactly as the GIN index over it (migration 0013), so
    the planner can use the index: the separator is a literal, not a bound parameter."""
    text_of = Record.title.op("||")(literal_column("' '")).op("||")(Record.description)
    return func.to_tsvector(literal_column("'english'::regconfig"), text_of)


def text_search(session: Session, collection_id: str, query: str, limit: int) -> list[tuple[int, float]]:
    """Records whose title or description has every word of ``query``: (pk, score), best first."""
    terms = words(query)
    if not terms:
        return []
    if _sqlite(session):
        _ensure(session)
        match = " ".join('"' + t.replace('"', "") + '"' for t in terms)
        rows = session.execute(
            text(
                f"SELECT rowid, bm25({FTS}) AS score FROM {FTS} "
                f"WHERE {FTS} MATCH :q AND collection_id = :c ORDER BY score, rowid LIMIT :n"
            ),
            {"q": match, "c": collection_id, "n": limit},
        ).all()
        return [(int(pk), -float(score)) for pk, score in rows]  # bm25: lower is better
    document = _document()
    tsquery = func.plainto_tsquery("english", " ".join(terms))
    rank = func.ts_rank(document, tsquery).label("score")
    found = session.execute(
        select(Record.pk, rank)
        .where(Record.collection_id == collection_id, document.op("@@")(tsquery))
        .order_by(rank.desc(), Record.pk)
        .limit(limit)
    ).all()
    return [(int(pk), float(score)) for pk, score in found]
