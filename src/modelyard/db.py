"""The database: one ``Database`` object per process (engine, sessions, the writer transaction,
skip-locked claiming, the DBOS system database, and the capabilities later parts add), the one shared
declarative ``Base``, and small helpers.

This is the only module that knows SQLite from PostgreSQL: every dialect decision goes through it, so a
part asks ``ctx.db`` (``writer()``, ``claimable()``, ``system_database_url()``...) instead of testing the
URL itself. A test (``tests/test_architecture.py``) keeps it so.
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
import threading
import uuid
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

from sqlalchemy import (
    CTE,
    JSON,
    BigInteger,
    ColumnElement,
    DateTime,
    Engine,
    Integer,
    MetaData,
    Select,
    create_engine,
    event,
    update,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, InstrumentedAttribute, Session, sessionmaker
from sqlalchemy.pool import Pool, QueuePool
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

if TYPE_CHECKING:
    from modelyard.settings import Settings

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLITE, POSTGRESQL = "sqlite", "postgresql"
Q = TypeVar("Q", bound="Select[*tuple[Any, ...]]")
# A 64-bit autoincrementing key: SQLite autoincrements an INTEGER PRIMARY KEY only.
BigId = BigInteger().with_variant(Integer(), SQLITE)


class Base(DeclarativeBase):
    """Declarative base of every modelyard table."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: DateTime(timezone=True)}


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


@overload
def aware(value: datetime) -> datetime: ...
@overload
def aware(value: None) -> None: ...
def aware(value: datetime | None) -> datetime | None:
    """A timestamp read back from the database as UTC-aware (SQLite returns naive ones)."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class epoch_seconds(FunctionElement[int]):
    """Whole seconds since 1970 of a timestamp column, in SQL (to count rows per minute, say, in the
    database rather than reading each row's time)."""

    type = BigInteger()
    inherit_cache = True


@compiles(epoch_seconds, SQLITE)
def _epoch_seconds_sqlite(element: epoch_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite keeps a timestamp as UTC text; strftime('%s') reads it as whole seconds
    return f"CAST(strftime('%s', {compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(epoch_seconds, POSTGRESQL)
def _epoch_seconds_postgresql(element: epoch_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)})) AS BIGINT)"


def new_id() -> str:
    """A new random id (32 hex chars)."""
    return uuid.uuid4().hex


def database_url(settings: Settings) -> str:
    """The metadata database's URL: ``settings.database_url``, else the SQLite file in the data dir."""
    if settings.database_url:
        return settings.database_url
    return f"{SQLITE}:///{(settings.data_dir / 'modelyard.db').resolve()}"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers run beside the one writer; API and worker processes share the file.
    cur.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable in WAL mode across process crashes (only an OS crash may lose the last commit).
    cur.execute("PRAGMA synchronous=NORMAL")
    # Writers from other processes wait instead of failing at once.
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _system_sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # As DBOS does for its own SQLite engine: writers take the lock at BEGIN and wait out each other.
    dbapi_conn.isolation_level = "IMMEDIATE"
    dbapi_conn.execute("PRAGMA busy_timeout=30000")
    dbapi_conn.execute("PRAGMA foreign_keys=ON")
    # Like our own database: in WAL mode NORMAL survives any process crash (a lost power supply may undo
    # the last commits). SQLite's default, FULL, syncs the disk at every checkpoint DBOS writes: several
    # per workflow, most of a small job's time.
    dbapi_conn.execute("PRAGMA synchronous=NORMAL")


def make_engine(url: str) -> Engine:
    """An engine for ``url``: SQLite (WAL, busy timeout) or PostgreSQL (psycopg 3, pooled)."""
    if url.startswith(SQLITE):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith(f"{POSTGRESQL}://"):
        url = f"{POSTGRESQL}+psycopg://" + url.removeprefix(f"{POSTGRESQL}://")
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """The session factory every part uses."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def embedded_session(session: Session) -> bool:
    """Whether ``session`` talks to the embedded database (SQLite), for a part's own dialect-specific SQL
    kept in one module of that part (the catalog's ``backends``): the decision is made here, by name."""
    return bool(session.get_bind().dialect.name == SQLITE)


@functools.cache
def _insert_new_statement(dialect_name: str, table: Any, names: tuple[str, ...]) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING (RETURNING names)`` into ``table``, built once per dialect,
    table and columns: a hot path then skips building the statement and its cache key at every call."""
    from sqlalchemy.dialects import postgresql, sqlite

    statement = (sqlite if dialect_name == SQLITE else postgresql).insert(table).on_conflict_do_nothing()
    return statement.returning(*(table.c[n] for n in names)) if names else statement


def insert_new(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` into ``table``, skipping any whose key is there already (another process may be
    adding the same rows): ``ON CONFLICT DO NOTHING`` in either dialect."""
    if not rows:
        return
    session.execute(_insert_new_statement(session.get_bind().dialect.name, table, ()), rows)


def insert_new_returning(
    session: Session, table: Any, rows: list[dict[str, Any]], *columns: Any
) -> list[Any]:
    """``insert_new``, returning ``columns`` of the rows this statement inserted (not those skipped)."""
    if not rows:
        return []
    # keyed by column name: a column's ``==`` builds an expression, unfit for a cache key
    names = tuple(
        c.__clause_element__().name if hasattr(c, "__clause_element__") else c.name for c in columns
    )
    statement = _insert_new_statement(session.get_bind().dialect.name, table, names)
    return list(session.execute(statement, rows).all())


_connection_serials = itertools.count(1)


def commits_mark(session: Session) -> tuple[int, int] | None:
    """A mark of what other connections have committed, as seen by ``session``'s connection: equal marks
    mean no other connection (of any process) committed anything in between. SQLite's ``data_version``,
    with a serial of the connection it was read on (the version is per connection, and a connection's
    own commits do not move it); None on PostgreSQL, which has no such thing: read what you need."""
    if not embedded_session(session):
        return None
    record = session.connection()
    serial = record.info.get("serial")
    if serial is None:
        serial = record.info["serial"] = next(_connection_serials)
    # the driver's own connection: one pragma, without building a statement
    version = record.connection.driver_connection.execute("PRAGMA data_version").fetchone()  # type: ignore[union-attr]
    return int(serial), int(version[0])


@dataclass
class Capabilities:
    """What the database offers beyond plain SQL, found when it is opened: the catalog part sets
    ``vector`` (pgvector, or an in-process index) and the geo part ``spatial`` (PostGIS, or STRtree)."""

    vector: object | None = None
    spatial: object | None = None


class Database:
    """The metadata database of one process, and every decision that depends on its dialect."""

    def __init__(self, url: str, *, data_dir: Path):
        self.url = url
        self.data_dir = data_dir
        self.engine = make_engine(url)
        self.sessions = make_sessionmaker(self.engine)
        self.capabilities = Capabilities()
        self.embedded = url.startswith(SQLITE)  # one file, one writer at a time
        # On SQLite this process's writers take turns here: SQLite's own busy handler makes a waiting
        # writer sleep 1-100 ms per retry, which under a dozen worker threads costs more than the work.
        self._writers = threading.Lock()
        self._lock = threading.Lock()
        self._system: Engine | None = None
        # Pools ``close`` took out of use while a thread still held one of their connections (a stream's
        # poll the server had not cancelled yet): that connection goes back to its old pool, and is closed
        # by the next ``close`` or when this object goes, never left for the garbage collector to find.
        self._retired: list[Pool] = []
        weakref.finalize(self, _dispose, self.engine, self._retired)

    def uow(self) -> AbstractContextManager[Session]:
        """A unit of work: a session committed on success, rolled back on error."""
        return unit_of_work(self.sessions)

    @contextmanager
    def reader(self) -> Iterator[Session]:
        """A session that only reads (a search): on PostgreSQL its connection is in autocommit, so no
        BEGIN and COMMIT round trips, each statement seeing what was committed when it began (as under
        READ COMMITTED in a transaction); on SQLite a unit of work."""
        if self.embedded:
            with self.uow() as session:
                yield session
            return
        with self.sessions() as session:
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            yield session

    @contextmanager
    def writer(self) -> Iterator[Session]:
        """A unit of work for a hot write path: on SQLite the writers of this process queue for it."""
        with self._writers if self.embedded else nullcontext(), self.uow() as session:
            yield session

    def claimable(self, query: Select[Any]) -> CTE:
        """``query`` (the rows to claim, with its LIMIT) as a CTE whose rows are locked, skipping those
        another transaction holds (PostgreSQL), and materialised, so PostgreSQL runs the locking LIMIT
        query once (as a plain IN subquery it may run it per row and claim more than the limit)."""
        return (
            query.with_for_update(skip_locked=True)
            .cte("claim")
            .prefix_with("MATERIALIZED", dialect=POSTGRESQL)
        )

    @staticmethod
    def take(session: Session, column: InstrumentedAttribute[Any], *where: ColumnElement[bool]) -> int:
        """Take the rows matching ``where`` of ``column``'s table for this transaction, before it reads
        anything: a write that changes nothing, which on SQLite takes the database lock (so what follows
        reads settled data) and on PostgreSQL locks those rows. How many rows."""
        result = session.execute(update(column.class_).where(*where).values({column: column}))
        return int(result.rowcount)  # type: ignore[attr-defined]

    @staticmethod
    def locking(query: Q) -> Q:
        """``query`` locking the rows it reads until commit (PostgreSQL; on SQLite the transaction's first
        write took the database lock already). Lock in one order everywhere (order by id)."""
        return query.with_for_update()

    def system_database_url(self) -> str:
        """DBOS's system database: its own SQLite file in the data dir (in WAL mode), or our PostgreSQL
        database (DBOS uses schema ``dbos``)."""
        if self.embedded:
            path = (self.data_dir / "dbos.sqlite").resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            # WAL persists on the file; DBOS leaves SQLite in rollback-journal mode, 2-3x slower here.
            with sqlite3.connect(path) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
            return f"{SQLITE}:///{path}"
        url = self.engine.url.render_as_string(hide_password=False)
        return url.replace(f"{POSTGRESQL}+psycopg://", f"{POSTGRESQL}://", 1)

    def dbos_engine(self, pool_size: int) -> Engine | None:
        """The engine DBOS should use on its system database, or None to let DBOS make its own (it does
        well on PostgreSQL; on SQLite ours sets the pragmas above). The caller disposes of it."""
        if not self.embedded:
            return None
        engine = create_engine(
            self.system_database_url(),
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=30,
        )
        event.listen(engine, "connect", _system_sqlite_pragmas)
        return engine

    def system_table(self, name: str) -> tuple[Engine, str]:
        """An engine that reads DBOS's system database, and the qualified name of its table ``name``."""
        if not self.embedded:
            return self.engine, f"dbos.{name}"
        with self._lock:
            if self._system is None:
                self._system = make_engine(self.system_database_url())
        return self._system, name

    def close(self) -> None:
        """Dispose of this process's engines."""
        with self._lock:
            if self._system is not None:
                self._system.dispose()
                self._system = None
            for pool in self._retired:
                pool.dispose()
            self._retired[:] = [p for p in self._retired if isinstance(p, QueuePool) and p.checkedout()]
            self._retired.append(self.engine.pool)
        self.engine.dispose()


def _dispose(engine: Engine, retired: list[Pool]) -> None:
    """Close every connection of ``engine`` and of the pools it used before (see ``Database.close``)."""
    for pool in retired:
        pool.dispose()
    engine.dispose()
