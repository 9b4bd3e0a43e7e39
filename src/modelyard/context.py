"""The running service's shared parts, built once by ``app.build_context`` (for the API and for a worker
alike), passed around, and closed by one ``AppContext.close()``.

Every shared resource is a typed field. Those that not every process needs (the DBOS client, the URL
client, the pipelines' I/O threads and caches) are ``Lazy``: made on first use, closed with the context.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from modelyard.bus import EventBus
from modelyard.db import Database
from modelyard.metrics import Metrics
from modelyard.settings import Settings
from modelyard.storage import Storage

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from modelyard.auth import KeyVerifier
    from modelyard.catalog.caches import CatalogCaches
    from modelyard.catalog.runner import Runner
    from modelyard.durable.client import Dispatcher
    from modelyard.durable.engine import Durable
    from modelyard.durable.loop import ClaimLoop
    from modelyard.inferrers.prepare import Preparer
    from modelyard.pipelines.spec import PipelineSpec
    from modelyard.pipelines.stages import StageEnv
    from modelyard.pipelines.stages.raw import RawCache
    from modelyard.serving.service import InferenceService

T = TypeVar("T")


class Lazy(Generic[T]):
    """A resource made on first ``get()`` (once, whatever the threads) and closed by ``close()``, after
    which the next ``get()`` makes a new one. Tests ``set()`` a fake instead."""

    def __init__(self, make: Callable[[], T], close: Callable[[T], None] | None = None):
        self._make = make
        self._close = close
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        """The resource, made now if it was not yet."""
        value = self._value
        if value is None:
            with self._lock:
                value = self._value
                if value is None:
                    value = self._value = self._make()
        return value

    def peek(self) -> T | None:
        """The resource if it was made, else None (nothing is made)."""
        return self._value

    def set(self, value: T) -> None:
        """Use ``value`` from now on (it is closed like a made one)."""
        with self._lock:
            self._value = value

    def close(self) -> None:
        """Close the resource if it was made."""
        with self._lock:
            value, self._value = self._value, None
        if value is not None and self._close is not None:
            self._close(value)


@dataclass
class AppContext:
    """Settings, database, artifact store, metrics and services of one process."""

    settings: Settings
    db: Database
    storage: Storage
    metrics: Metrics
    verifier: KeyVerifier
    inference: InferenceService
    # DBOS's system database as any process sees it (schedules, workflow statuses)
    dispatcher: Lazy[Dispatcher]
    # the thread that computes re-inferences in a worker process (``catalog.runner``); closed before the
    # resources below that its steps use
    reinfer: Lazy[Runner]
    # the client for user-named URLs (``fetch.new_client``)
    http: Lazy[httpx.Client]
    # pipelines: threads for URL fetches, raw data kept in memory, the stages' environment
    io_pool: Lazy[ThreadPoolExecutor]
    raw_cache: Lazy[RawCache]
    stage_env: Lazy[StageEnv]
    # the helper process that decodes ``features`` images beside in-place re-inference (``inferrers.prepare``)
    preparer: Lazy[Preparer]
    # what the catalog keeps in memory (filters' record sets, vector indexes), checked against revisions
    catalog: Lazy[CatalogCaches]
    bus: EventBus = field(default_factory=EventBus)
    # parsed pipeline spec versions (immutable, so kept): (pipeline id, version) -> (name, spec)
    specs: dict[tuple[str, int], tuple[str, PipelineSpec]] = field(default_factory=dict)
    # durable work in this process, when it runs workers (set by ``Durable.launch``)
    durable: Durable | None = None
    # this process's claim loops by queue name, while they run (to wake them when work is queued here)
    claim_loops: dict[str, ClaimLoop] = field(default_factory=dict)
    # whether the collectors of ``/metrics`` are registered in ``metrics.registry``
    collectors: bool = False
    # when this process last logged each running job's progress (``jobs.service.progress_due``)
    job_progress_at: dict[str, float] = field(default_factory=dict)
    # measured CPU seconds per row of each (model, version) (``jobs.sizing``: chunks sized by cost)
    row_costs: dict[tuple[str, int], float] = field(default_factory=dict)

    @property
    def engine(self) -> Engine:
        """The metadata database's engine."""
        return self.db.engine

    @property
    def sessions(self) -> sessionmaker[Session]:
        """The session factory."""
        return self.db.sessions

    def uow(self) -> AbstractContextManager[Session]:
        """A unit of work: a session committed on success, rolled back on error."""
        return self.db.uow()

    def lazies(self) -> list[Lazy[Any]]:
        """Every resource made on first use (each ``Lazy`` field, so ``close`` forgets none)."""
        return [v for f in fields(self) if isinstance(v := getattr(self, f.name), Lazy)]

    def close(self) -> None:
        """Stop durable work (if this process runs it) and close every resource; a context closed may be
        used again (lazy resources are made anew)."""
        if self.durable is not None:
            self.durable.shutdown()
            self.durable = None
        for lazy in self.lazies():
            lazy.close()
        self.inference.close()
        self.db.close()
