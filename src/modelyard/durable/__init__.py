"""Durable work on DBOS Transact: set-up, the one list of workflow modules, queues, and worker liveness.

DBOS checkpoints workflows and steps in its system database (its own SQLite file beside ours in the
embedded default, the same PostgreSQL database under schema ``dbos`` in scale-out). Self-hosted DBOS
recovers a crashed process's PENDING workflows only when a process with the same executor id restarts,
so liveness is ours: every worker has its own executor id and a heartbeat row in ``workers``; a live
worker that sees a heartbeat expire takes that row (an atomic conditional UPDATE is the lease, so one
recoverer wins) and asks DBOS to recover that executor's pending workflows. Steps run at least once:
every side effect they have is keyed so a repeat is harmless.

Import registers (workflow modules declare queues and decorate functions); nothing starts until
``Durable.launch``.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sqlite3
import sys
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import JSON, Engine, String, create_engine, event, or_, select, text, update
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.context import AppContext
from modelyard.db import Base, make_engine, utcnow
from modelyard.settings import Settings

if TYPE_CHECKING:
    from dbos import DBOSClient

log = logging.getLogger("modelyard.durable")

# Every module holding workflows; imported before launch so DBOS knows them all (recovery needs that).
WORKFLOW_MODULES: list[str] = [
    "modelyard.jobs.workflows",
    "modelyard.pipelines.workflows",
    "modelyard.catalog.workflows",
]
APP_NAME = "modelyard"
# Fixed across processes and restarts: DBOS only recovers and dequeues work of its own version.
APP_VERSION = "modelyard-1"
# How often a worker polls a DBOS queue (``jobs.chunks``): a chunk waits up to this long after a slot frees.
POLL_SECONDS = 0.05
# DBOS's notification listener (events, messages; on SQLite it polls) is not on the path of queued work,
# and on SQLite its polls compete with checkpoints for the file: poll it less often.
NOTIFY_POLL_SECONDS = 0.5
# How often a worker re-reads the schedules table (after its first minute, when DBOS polls every second).
SCHEDULER_POLL_SECONDS = 5.0
# connections DBOS may hold on its system database in one process
SYS_DB_POOL = 10


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A queue declared by a workflow module: per-worker and (optional) global concurrency.

    ``worker_concurrency`` may be a function of the settings; ``None`` takes ``settings.worker_concurrency``
    at launch. DBOS keeps a queue's limits in its database, so the last worker to launch sets them for all.
    """

    name: str
    worker_concurrency: int | Callable[[Settings], int] | None
    global_concurrency: int | None = None

    def per_worker(self, settings: Settings) -> int:
        """The per-worker limit under ``settings``."""
        if callable(self.worker_concurrency):
            return self.worker_concurrency(settings)
        return self.worker_concurrency or settings.worker_concurrency


QUEUES: dict[str, QueueSpec] = {}
# Called with the process's context on every heartbeat of a launched worker (sweeps, reconciliation).
TICKS: list[Callable[[AppContext], None]] = []
_context: AppContext | None = None


def declare_queue(
    name: str,
    *,
    worker_concurrency: int | Callable[[Settings], int] | None,
    global_concurrency: int | None = None,
) -> str:
    """Declare a queue at import time; it is registered with DBOS at launch. Returns its name."""
    QUEUES[name] = QueueSpec(name, worker_concurrency, global_concurrency)
    return name


def on_tick(fn: Callable[[AppContext], None]) -> Callable[[AppContext], None]:
    """Run ``fn(ctx)`` on every heartbeat of a launched worker; it must be idempotent (all workers run it)."""
    TICKS.append(fn)
    return fn


Loop = Callable[[AppContext, threading.Event], None]
# Long-running loops of a part (the pipelines dispatcher), by a name a worker's queue list may select;
# each runs in its own thread from launch until the stop event is set, and is joined before DBOS stops.
LOOPS: dict[str, Loop] = {}


def background(name: str) -> Callable[[Loop], Loop]:
    """Run the decorated ``fn(ctx, stop)`` in every launched worker that listens to ``name`` (or to all)."""

    def register(fn: Loop) -> Loop:
        LOOPS[name] = fn
        return fn

    return register


def current() -> AppContext:
    """The context of this process, for workflow steps (set by ``Durable.launch``)."""
    if _context is None:
        raise RuntimeError("durable work is not launched in this process")
    return _context


def import_workflows() -> None:
    """Import every workflow module."""
    for name in WORKFLOW_MODULES:
        importlib.import_module(name)


class Worker(Base):
    """One process that runs durable work, with its heartbeat."""

    __tablename__ = "workers"

    executor_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int]
    queues: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # alive -> stopped (clean exit) | recovering (heartbeat expired, being recovered) -> recovered
    state: Mapped[str] = mapped_column(String(20), default="alive", index=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    recovered_by: Mapped[str | None] = mapped_column(String(100), default=None)
    recovered_at: Mapped[datetime | None] = mapped_column(default=None)
    recovered_workflows: Mapped[int] = mapped_column(default=0)


def default_executor_id() -> str:
    """A new id per process: a new host never reuses a dead process's id."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def system_database_url(ctx: AppContext) -> str:
    """DBOS's own SQLite file in the data dir, or our PostgreSQL database (DBOS uses schema ``dbos``)."""
    if ctx.settings.is_sqlite():
        path = (ctx.settings.data_dir / "dbos.sqlite").resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        # WAL persists on the file; DBOS leaves SQLite in rollback-journal mode, 2-3x slower here.
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
        return f"sqlite:///{path}"
    url = ctx.engine.url.render_as_string(hide_password=False)
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _system_sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # As DBOS does for its own SQLite engine: writers take the lock at BEGIN and wait out each other.
    dbapi_conn.isolation_level = "IMMEDIATE"
    dbapi_conn.execute("PRAGMA busy_timeout=30000")
    dbapi_conn.execute("PRAGMA foreign_keys=ON")
    # Like our own database: in WAL mode NORMAL survives any process crash (a lost power supply may undo
    # the last commits). SQLite's default, FULL, syncs the disk at every checkpoint DBOS writes: several
    # per workflow, most of a small job's time.
    dbapi_conn.execute("PRAGMA synchronous=NORMAL")


def system_sqlite_engine(ctx: AppContext, pool_size: int) -> Engine:
    """The engine DBOS uses for its SQLite system database in this process."""
    engine = create_engine(
        system_database_url(ctx),
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=30,
    )
    event.listen(engine, "connect", _system_sqlite_pragmas)
    return engine


class Durable:
    """DBOS in this process, plus the heartbeat and dead-worker recovery loop."""

    def __init__(self, ctx: AppContext, *, executor_id: str | None = None, queues: list[str] | None = None):
        self.ctx = ctx
        self.executor_id = executor_id or ctx.settings.executor_id or default_executor_id()
        self.listen = queues
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loops: list[threading.Thread] = []
        self.launched = False
        self._engine: Engine | None = None

    def launch(self) -> None:
        """Configure and start DBOS, register queues, write the first heartbeat, start the monitor."""
        from dbos import DBOS

        global _context
        sys.setswitchinterval(self.ctx.settings.worker_switch_interval_ms / 1000)
        import_workflows()
        _context = self.ctx
        engine = system_sqlite_engine(self.ctx, SYS_DB_POOL) if self.ctx.settings.is_sqlite() else None
        self._engine = engine
        DBOS(
            config={
                "name": APP_NAME,
                "system_database_url": system_database_url(self.ctx),
                "system_database_engine": engine,
                "executor_id": self.executor_id,
                "application_version": APP_VERSION,
                "log_level": "WARNING",
                "sys_db_pool_size": SYS_DB_POOL,
                "notification_listener_polling_interval_sec": NOTIFY_POLL_SECONDS,
                "scheduler_polling_interval_sec": SCHEDULER_POLL_SECONDS,
            }
        )
        if self.listen:
            DBOS.listen_queues(self.listen)
        DBOS.launch()
        for spec in QUEUES.values():
            DBOS.register_queue(
                spec.name,
                worker_concurrency=spec.per_worker(self.ctx.settings),
                global_concurrency=spec.global_concurrency,
                polling_interval_sec=POLL_SECONDS,
            )
        self._register()
        self.ctx.extras["durable"] = self
        self.launched = True
        self._thread = threading.Thread(target=self._monitor, name="modelyard-heartbeat", daemon=True)
        self._thread.start()
        for name, loop in LOOPS.items():
            if self.listen is None or name in self.listen:
                thread = threading.Thread(
                    target=loop, args=(self.ctx, self._stop), name=f"modelyard-{name}", daemon=True
                )
                thread.start()
                self._loops.append(thread)
        log.info(
            "durable worker started", extra={"executor_id": self.executor_id, "queues": self.listen or "all"}
        )

    def shutdown(self, timeout: int = 5) -> None:
        """Stop the monitor, mark this worker stopped, and stop DBOS (waiting briefly for running work)."""
        from dbos import DBOS

        global _context
        if not self.launched:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for thread in self._loops:
            thread.join(timeout=10)
        self._loops.clear()
        with self.ctx.uow() as session:
            session.execute(
                update(Worker).where(Worker.executor_id == self.executor_id).values(state="stopped")
            )
        DBOS.destroy(workflow_completion_timeout_sec=timeout)
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        _context = None
        self.launched = False

    def _register(self) -> None:
        with self.ctx.uow() as session:
            row = session.get(Worker, self.executor_id)
            if row is None:
                row = Worker(executor_id=self.executor_id, host=socket.gethostname(), pid=os.getpid())
                session.add(row)
            row.queues = self.listen or sorted(set(QUEUES) | set(LOOPS))
            row.state, row.heartbeat_at = "alive", utcnow()

    def _monitor(self) -> None:
        interval = self.ctx.settings.heartbeat_seconds
        while not self._stop.wait(interval):
            try:
                self.beat()
                self.recover_dead()
            except Exception:
                log.exception("heartbeat failed", extra={"executor_id": self.executor_id})
            for tick in TICKS:
                try:
                    tick(self.ctx)
                except Exception:
                    log.exception("tick failed", extra={"tick": getattr(tick, "__name__", repr(tick))})

    def beat(self) -> None:
        """Write this worker's heartbeat."""
        with self.ctx.uow() as session:
            session.execute(
                update(Worker)
                .where(Worker.executor_id == self.executor_id)
                .values(heartbeat_at=utcnow(), state="alive")
            )

    def recover_dead(self) -> list[str]:
        """Recover the pending work of every worker whose heartbeat expired; returns their executor ids."""
        from dbos import DBOS

        cutoff = utcnow() - timedelta(seconds=self.ctx.settings.heartbeat_timeout_seconds)
        with self.ctx.uow() as session:
            stale = session.scalars(
                select(Worker.executor_id).where(
                    Worker.executor_id != self.executor_id,
                    or_(
                        (Worker.state == "alive") & (Worker.heartbeat_at < cutoff),
                        # a clean exit may leave work that did not finish in its grace period
                        Worker.state == "stopped",
                        # a recoverer that died before finishing: take the lease again
                        (Worker.state == "recovering") & (Worker.recovered_at < cutoff),
                    ),
                )
            ).all()
        recovered = []
        for dead in stale:
            with self.ctx.uow() as session:
                won = session.execute(  # type: ignore[attr-defined]
                    update(Worker)
                    .where(
                        Worker.executor_id == dead,
                        Worker.state.in_(["alive", "recovering", "stopped"]),
                        or_(
                            Worker.state == "stopped",
                            Worker.heartbeat_at < cutoff,
                            Worker.recovered_at < cutoff,
                        ),
                    )
                    .values(state="recovering", recovered_by=self.executor_id, recovered_at=utcnow())
                ).rowcount
            if not won:
                continue
            handles = DBOS._recover_pending_workflows([dead])
            with self.ctx.uow() as session:
                session.execute(
                    update(Worker)
                    .where(Worker.executor_id == dead)
                    .values(state="recovered", recovered_workflows=Worker.recovered_workflows + len(handles))
                )
            log.warning(
                "recovered a dead worker's work",
                extra={"dead": dead, "by": self.executor_id, "workflows": len(handles)},
            )
            recovered.append(dead)
        return recovered


ACTIVE_STATUSES = ("ENQUEUED", "PENDING", "DELAYED")


class Dispatcher(Protocol):
    """Durable work as any process sees it, API-only replicas included: enqueue, cancel, forget, look up,
    and cron schedules. ``DbosDispatcher`` writes DBOS's system database; tests inject a fake."""

    def enqueue(self, workflow: str, queue: str, workflow_id: str, *args: Any) -> None:
        """Enqueue ``workflow(*args)`` under ``workflow_id``; a second enqueue of that id is a no-op."""

    def cancel(self, workflow_id_prefix: str) -> int:
        """Cancel the waiting or running workflows whose id starts with the prefix; returns how many."""

    def forget(self, workflow_id_prefix: str) -> None:
        """Delete the records of every workflow whose id starts with the prefix."""

    def statuses(self, workflow_ids: list[str]) -> dict[str, str]:
        """The DBOS status (ENQUEUED, PENDING, SUCCESS, ERROR...) of each of the workflows that exist."""

    def create_schedule(
        self, name: str, workflow: str, cron: str, context: dict[str, Any], timezone: str | None
    ) -> None:
        """Create a cron schedule running ``workflow(slot, context)`` once per slot."""

    def list_schedules(self, workflow: str) -> list[dict[str, Any]]:
        """Schedules that run ``workflow`` (DBOS ``WorkflowSchedule`` dicts)."""

    def get_schedule(self, name: str) -> dict[str, Any] | None:
        """One schedule, None if there is none of that name."""

    def delete_schedule(self, name: str) -> None:
        """Delete a schedule (no-op when missing)."""

    def set_schedule_paused(self, name: str, paused: bool) -> None:
        """Pause or resume a schedule."""


class DbosDispatcher:
    """The dispatcher over ``DBOSClient``: works whether or not this process runs DBOS itself."""

    def __init__(self, client: DBOSClient):
        self.client = client

    def enqueue(self, workflow: str, queue: str, workflow_id: str, *args: Any) -> None:
        """See ``Dispatcher.enqueue``."""
        self.client.enqueue(
            {
                "workflow_name": workflow,
                "queue_name": queue,
                "workflow_id": workflow_id,
                "app_version": APP_VERSION,
                "application_name": APP_NAME,
            },
            *args,
        )

    def _ids(self, prefix: str, statuses: tuple[str, ...] | None = None) -> list[str]:
        rows = self.client.list_workflows(
            workflow_id_prefix=prefix,
            status=list(statuses) if statuses else None,
            load_input=False,
            load_output=False,
        )
        return [row.workflow_id for row in rows]

    def cancel(self, workflow_id_prefix: str) -> int:
        """See ``Dispatcher.cancel``."""
        ids = self._ids(workflow_id_prefix, ACTIVE_STATUSES)
        if ids:
            self.client.cancel_workflows(ids)
        return len(ids)

    def forget(self, workflow_id_prefix: str) -> None:
        """See ``Dispatcher.forget``."""
        ids = self._ids(workflow_id_prefix)
        if ids:
            self.client.delete_workflows(ids)

    def statuses(self, workflow_ids: list[str]) -> dict[str, str]:
        """See ``Dispatcher.statuses``."""
        if not workflow_ids:
            return {}
        rows = self.client.list_workflows(workflow_ids=workflow_ids, load_input=False, load_output=False)
        return {row.workflow_id: str(row.status) for row in rows}

    def create_schedule(
        self, name: str, workflow: str, cron: str, context: dict[str, Any], timezone: str | None
    ) -> None:
        """See ``Dispatcher.create_schedule``."""
        self.client.create_schedule(
            schedule_name=name,
            workflow_name=workflow,
            schedule=cron,
            context=context,
            cron_timezone=timezone,
            application_name=APP_NAME,
        )

    def list_schedules(self, workflow: str) -> list[dict[str, Any]]:
        """See ``Dispatcher.list_schedules``."""
        return [dict(s) for s in self.client.list_schedules(workflow_name=workflow)]

    def get_schedule(self, name: str) -> dict[str, Any] | None:
        """See ``Dispatcher.get_schedule``."""
        found = self.client.get_schedule(name)
        return dict(found) if found is not None else None

    def delete_schedule(self, name: str) -> None:
        """See ``Dispatcher.delete_schedule``."""
        self.client.delete_schedule(name)

    def set_schedule_paused(self, name: str, paused: bool) -> None:
        """See ``Dispatcher.set_schedule_paused``."""
        if paused:
            self.client.pause_schedule(name)
        else:
            self.client.resume_schedule(name)


def start_claimed(claim_id: str, workflow: Callable[..., Any], *args: Any) -> Future[Any] | None:
    """Start a claim's workflow in this process, its id the claim id (so a repeat is a no-op: it returns
    None when a workflow of that id exists already)."""
    from dbos import DBOS, SetWorkflowID

    with SetWorkflowID(claim_id):
        handle = DBOS.start_workflow(workflow, *args)
    future: Future[Any] | None = getattr(handle, "future", None)
    return future


_client_lock = threading.Lock()


def dispatcher(ctx: AppContext) -> Dispatcher:
    """This process's dispatcher (created once; the system database is created or migrated first)."""
    found: Dispatcher | None = ctx.extras.get("dispatcher")
    if found is not None:
        return found
    with _client_lock:
        found = ctx.extras.get("dispatcher")
        if found is None:
            from dbos import DBOS, DBOSClient

            url = system_database_url(ctx)
            DBOS.migrate(url)
            found = DbosDispatcher(DBOSClient(system_database_url=url, application_name=APP_NAME))
            ctx.extras["dispatcher"] = found
    return found


def system_engine(ctx: AppContext) -> tuple[Engine, str]:
    """An engine on DBOS's system database and the qualified name of its ``workflow_status`` table."""
    if not ctx.settings.is_sqlite():
        return ctx.engine, "dbos.workflow_status"
    engine: Engine | None = ctx.extras.get("system_engine")
    if engine is None:
        with _client_lock:
            engine = ctx.extras.get("system_engine")
            if engine is None:
                engine = make_engine(system_database_url(ctx))
                ctx.extras["system_engine"] = engine
    return engine, "workflow_status"


def close_clients(ctx: AppContext) -> None:
    """Close the dispatcher and system-database engine this process opened (if any)."""
    found = ctx.extras.pop("dispatcher", None)
    if isinstance(found, DbosDispatcher):
        found.client.destroy()
    engine = ctx.extras.pop("system_engine", None)
    if engine is not None:
        engine.dispose()


@dataclass(frozen=True, slots=True)
class WorkflowCount:
    """Workflows of one queue in one DBOS status: how many, the oldest creation, how many ended recently."""

    queue: str
    status: str
    count: int
    oldest_ms: int | None
    recent: int


def workflow_counts(ctx: AppContext, *, since: datetime, recent_since: datetime) -> list[WorkflowCount]:
    """Per queue and status: active workflows, and those that ended since ``since`` (``recent``: since
    ``recent_since``). Reads DBOS's ``workflow_status`` table (dbos is pinned; a test covers the query)."""
    engine, table = system_engine(ctx)
    sql = text(
        f"SELECT queue_name, status, COUNT(*), MIN(created_at), "
        f"SUM(CASE WHEN COALESCE(completed_at, updated_at) >= :recent THEN 1 ELSE 0 END) "
        f"FROM {table} WHERE queue_name IS NOT NULL AND (status IN ('ENQUEUED', 'PENDING', 'DELAYED') "
        f"OR COALESCE(completed_at, updated_at) >= :since) GROUP BY queue_name, status"
    )
    params = {"since": int(since.timestamp() * 1000), "recent": int(recent_since.timestamp() * 1000)}
    with engine.connect() as conn:
        rows = conn.execute(sql, params).all()
    return [WorkflowCount(r[0], r[1], int(r[2]), r[3], int(r[4] or 0)) for r in rows]


def running_work(ctx: AppContext) -> dict[str, list[str]]:
    """Ids of the workflows each executor is running now (DBOS status PENDING)."""
    engine, table = system_engine(ctx)
    sql = text(f"SELECT executor_id, workflow_uuid FROM {table} WHERE status = 'PENDING'")
    out: dict[str, list[str]] = {}
    with engine.connect() as conn:
        for executor_id, workflow_id in conn.execute(sql):
            out.setdefault(executor_id or "", []).append(workflow_id)
    return out
