"""Every piece of dialect-specific SQL of the catalog, in one place: inserts that skip rows already
there, the two reads every search makes (its collection's row and its page's records), and the full-text
index over records' title and description. SQLite (the embedded default) keeps
an FTS5 table (porter stemming, bm25 rank) written beside each record; PostgreSQL ranks ``to_tsvector``
against ``plainto_tsquery`` (English stemming both sides, ``ts_rank``), computed over the collection's
rows through a GIN index over that expression (migration 0013), so it needs no table of its own.

On SQLite the two per-search reads run as plain SQL on the driver's connection under the session:
SQLAlchemy's statement execution and result processing cost about three times the query itself (about
90 us against 35 us for a page of ten records), a large part of an ANN query's millisecond. Their values
come back as SQLAlchemy's would (JSON decoded, timestamps as the naive UTC ``datetime`` SQLite gives).

The FTS5 table is made on first use rather than by a migration: its shadow tables are not SQLAlchemy
tables, and keeping them out of the migrations keeps autogenerate's comparison exact. A table made on an
existing database is filled from the records at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Table, bindparam, func, literal_column, select, text
from sqlalchemy.orm import Session

from modelyard import db
from modelyard.catalog.models import Collection, Record

FTS = "catalog_text"
_ready: set[str] = set()  # databases (by URL) whose FTS5 table is known to exist
WORD = re.compile(r"\w+", re.UNICODE)


def insert_new(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows``, skipping any whose key is already there (another process may add it meanwhile)."""
    db.insert_new(session, table, list(rows))


_sqlite = db.embedded_session  # the FTS5 table exists only in the embedded database


def _driver(session: Session) -> Any:
    """The SQLite driver connection under ``session`` (None on PostgreSQL): a hot read as plain SQL."""
    if not _sqlite(session):
        return None
    return session.connection().connection.driver_connection


# built once: SQLAlchemy's path (PostgreSQL), where building a statement cost more than running it
_STATE = select(Collection.id, Collection.name, Collection.revision, Collection.deletions).where(
    Collection.name == bindparam("name")
)
_STATE_SQL = "SELECT id, name, revision, deletions FROM catalog_collections WHERE name = ?"


def collection_row(session: Session, name: str) -> tuple[str, str, int, int] | None:
    """(id, name, revision, deletions) of the collection called ``name``, or None."""
    driver = _driver(session)
    if driver is not None:
        found: tuple[str, str, int, int] | None = driver.execute(_STATE_SQL, (name,)).fetchone()
        return found
    row = session.connection().execute(_STATE, {"name": name}).first()
    return None if row is None else (row[0], row[1], row[2], row[3])


class RecordRow(NamedTuple):
    """The columns a record shows, as read for a page."""

    pk: int
    record_id: str
    title: str
    description: str
    source: str | None
    attributes: dict[str, Any]
    content_hash: str | None
    created_at: datetime
    updated_at: datetime


_COLUMNS = "pk, record_id, title, description, source, attributes, content_hash, created_at, updated_at"
RECORD_COLUMNS = tuple(_COLUMNS.split(", "))  # what a search page shows (pgvector reads them with its hits)
_RECORDS = select(*(Record.__table__.c[c] for c in RECORD_COLUMNS)).where(
    Record.pk.in_(bindparam("pks", expanding=True))
)


def record_rows(session: Session, pks: Sequence[int]) -> list[RecordRow]:
    """The records of ``pks`` (any order; a pk not there is left out)."""
    driver = _driver(session)
    if driver is None:
        return [RecordRow(*r) for r in session.connection().execute(_RECORDS, {"pks": list(pks)})]
    sql = f"SELECT {_COLUMNS} FROM catalog_records WHERE pk IN ({', '.join('?' * len(pks))})"
    return [
        RecordRow(pk, rid, title, desc, src, _json(attrs), chash, _time(created), _time(updated))
        for pk, rid, title, desc, src, attrs, chash, created, updated in driver.execute(sql, list(pks))
    ]


def _json(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:  # what json.dumps wrote and orjson refuses (NaN, Infinity)
        return json.loads(value)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


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
        # the collection is checked on the record's own row: reading the FTS table's unindexed column
        # costs more per match (about 2 ms against 1.2 ms for 900 matches)
        rows = session.execute(
            text(
                f"SELECT t.rowid, bm25({FTS}) AS score FROM {FTS} t "
                "CROSS JOIN catalog_records r ON r.pk = t.rowid "
                f"WHERE {FTS} MATCH :q AND r.collection_id = :c ORDER BY score, t.rowid LIMIT :n"
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
