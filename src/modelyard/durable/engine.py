"""DBOS in a process: its configuration, the one list of workflow modules, and ``Durable``, which
launches DBOS, the worker's heartbeat and its claim loops, and stops them.

Import registers (workflow modules decorate functions and mark the workflows of claimed queues);
nothing starts until ``Durable.launch``.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from modelyard.durable import workers
from modelyard.durable.loop import WORKFLOWS, ClaimLoop, starter
from modelyard.durable.status import WorkState, engine_statuses

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from modelyard.context import AppContext

log = logging.getLogger("modelyard.durable")

# Every module holding workflows; imported before launch so DBOS knows them all (recovery needs that).
WORKFLOW_MODULES: list[str] = [
    "modelyard.jobs.workflows",
    "modelyard.pipelines.workflows",
    "modelyard.schedules.workflows",
    "modelyard.catalog.workflows",
    "modelyard.notify.workflows",
    "modelyard.geo.workflows",
    "modelyard.artifacts.workflows",
]
APP_NAME = "modelyard"
# Fixed across processes and restarts: DBOS only recovers and dequeues work of its own version.
APP_VERSION = "modelyard-1"
# DBOS's notification listener (events, messages; on SQLite it polls) is not on the path of queued work,
# and on SQLite its polls compete with checkpoints for the file: poll it less often.
NOTIFY_POLL_SECONDS = 0.5
# How often a worker re-reads the schedules table (after its first minute, when DBOS polls every second).
SCHEDULER_POLL_SECONDS = 5.0
# connections DBOS may hold on its system database in one process
SYS_DB_POOL = 10
# While stopping, look this often whether this worker's workflows have finished. DBOS's own wait
# (``destroy(workflow_completion_timeout_sec=...)``) sleeps a whole second before it first looks.
DRAIN_POLL_SECONDS = 0.02

Tick = Callable[["AppContext"], None]
# Called with the process's context on every heartbeat of a launched worker (sweeps, reconciliation).
TICKS: list[Tick] = []
_context: AppContext | None = None


def on_tick(fn: Tick) -> Tick:
    """Run ``fn(ctx)`` on every heartbeat of a launched worker; it must be idempotent (all workers run it)."""
    TICKS.append(fn)
    return fn


def current() -> AppContext:
    """The context of this process, for workflow steps (set by ``Durable.launch``)."""
    if _context is None:
        raise RuntimeError("durable work is not launched in this process")
    return _context


def import_workflows() -> None:
    """Import every workflow module (which declares the claimed queues and their workflows)."""
    for name in WORKFLOW_MODULES:
        importlib.import_module(name)


def sweep_claims(ctx: AppContext) -> int:
    """Release the stale claims of every claimed queue (see ``ClaimedQueue.sweep``); how many rows."""
    statuses = ctx.dispatcher.get().statuses
    return sum(queue.sweep(ctx, statuses) for queue, _ in WORKFLOWS.values())


class Durable:
    """DBOS in this process, plus the heartbeat and dead-worker recovery loop and the claim loops of the
    queues it listens to (all of them unless ``queues`` names some)."""

    def __init__(self, ctx: AppContext, *, executor_id: str | None = None, queues: list[str] | None = None):
        self.ctx = ctx
        self.executor_id = executor_id or ctx.settings.executor_id or workers.default_executor_id()
        self.listen = queues
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loops: list[threading.Thread] = []
        self.launched = False
        self._engine: Engine | None = None

    def launch(self) -> None:
        """Configure and start DBOS, write the first heartbeat, start the monitor and the claim loops."""
        from dbos import DBOS

        global _context
        sys.setswitchinterval(self.ctx.settings.worker_switch_interval_ms / 1000)
        import_workflows()
        _context = self.ctx
        self._engine = self.ctx.db.dbos_engine(SYS_DB_POOL)
        DBOS(
            config={
                "name": APP_NAME,
                "system_database_url": self.ctx.db.system_database_url(),
                "system_database_engine": self._engine,
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
        workers.register(self.ctx, self.executor_id, self.listen or sorted(WORKFLOWS))
        self.ctx.durable = self
        self.launched = True
        self._thread = threading.Thread(target=self._monitor, name="modelyard-heartbeat", daemon=True)
        self._thread.start()
        for name, (queue, workflow) in WORKFLOWS.items():
            if self.listen is None or name in self.listen:
                loop = ClaimLoop(self.ctx, queue, starter(queue, workflow))
                thread = threading.Thread(
                    target=loop.serve, args=(self._stop,), name=f"modelyard-{name}", daemon=True
                )
                thread.start()
                self._loops.append(thread)
        log.info(
            "durable worker started", extra={"executor_id": self.executor_id, "queues": self.listen or "all"}
        )

    def shutdown(self, timeout: int = 5) -> None:
        """Stop the monitor and claim loops, mark this worker stopped, and stop DBOS (waiting briefly for
        running work)."""
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
        workers.stopped(self.ctx, self.executor_id)
        self._drain(timeout)
        DBOS.destroy(workflow_completion_timeout_sec=0)
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        _context = None
        self.launched = False
        if self.ctx.durable is self:
            self.ctx.durable = None

    def _drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the workflows running in this process (running under this
        executor id) to end; what is still running then is recovered later, like a crashed worker's."""
        from dbos import DBOS

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = DBOS.list_workflows(
                status=list(engine_statuses(WorkState.RUNNING)),
                executor_id=self.executor_id,
                limit=1,
                load_input=False,
                load_output=False,
            )
            if not running:
                return
            time.sleep(DRAIN_POLL_SECONDS)
        log.warning("stopping with workflows still running", extra={"executor_id": self.executor_id})

    def _monitor(self) -> None:
        interval = self.ctx.settings.heartbeat_seconds
        while not self._stop.wait(interval):
            try:
                self.beat()
                self.recover_dead()
            except Exception:
                log.exception("heartbeat failed", extra={"executor_id": self.executor_id})
            for tick in [sweep_claims, *TICKS]:
                try:
                    tick(self.ctx)
                except Exception:
                    log.exception("tick failed", extra={"tick": getattr(tick, "__name__", repr(tick))})

    def beat(self) -> None:
        """Write this worker's heartbeat."""
        workers.beat(self.ctx, self.executor_id)

    def recover_dead(self) -> list[str]:
        """Recover the pending work of every worker whose heartbeat expired; returns their executor ids."""
        return workers.recover_dead(self.ctx, self.executor_id)
