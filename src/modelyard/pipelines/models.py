"""Pipeline tables: pipelines and their immutable spec versions, events (one run of a pipeline over one
raw data location), where each event's raw data was fetched to, and stage runs (one stage on one event).

The database is the source of truth for stage runs: the dispatcher claims ``ready`` runs in batches,
the batch workflow settles them, and every watcher reads these rows.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.db import Base, BigId, new_id, utcnow


class EventState(StrEnum):
    """pending -> running -> complete | failed | cancelled (a re-run makes a final event running again)."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def is_final(self) -> bool:
        """Whether the event has stopped."""
        return self in EVENT_TERMINAL


EVENT_TERMINAL = frozenset({EventState.COMPLETE, EventState.FAILED, EventState.CANCELLED})


class StageState(StrEnum):
    """pending (inputs not done) -> ready (queued) -> running (claimed into a batch) -> done | failed |
    skipped (an input failed, or the event was cancelled)."""

    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"

    def is_final(self) -> bool:
        """Whether the stage run has stopped."""
        return self in STAGE_TERMINAL


STAGE_TERMINAL = frozenset({StageState.DONE, StageState.FAILED, StageState.SKIPPED})


class Pipeline(Base):
    """A named pipeline; its specs are ``PipelineVersion`` rows, the newest is ``latest_version``."""

    __tablename__ = "pipelines"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    latest_version: Mapped[int] = mapped_column(Integer, default=1)
    archive_after_seconds: Mapped[int | None] = mapped_column(BigInteger, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PipelineVersion(Base):
    """One immutable spec of a pipeline (applying an identical spec again makes no new version)."""

    __tablename__ = "pipeline_versions"

    pipeline_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("pipelines.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column()
    spec_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Event(Base):
    """One run of a pipeline version over one raw data location; ``name`` is the client's idempotency key."""

    __tablename__ = "pipeline_events"
    __table_args__ = (UniqueConstraint("pipeline_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    pipeline_id: Mapped[str] = mapped_column(String(32), ForeignKey("pipelines.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(String(2000))
    stages: Mapped[list[Any]] = mapped_column(default=list)  # the required stages, dependencies included
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(20), default=EventState.PENDING)
    error_stage: Mapped[str | None] = mapped_column(String(100), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    runs: Mapped[int] = mapped_column(Integer, default=1)  # 1 + re-runs
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    archived_at: Mapped[datetime | None] = mapped_column(default=None)


# a page of a pipeline's events, newest first, starts with a seek on one of these (keyset paging), and
# its counts by state are read from the second alone
Index("ix_pipeline_events_created", Event.pipeline_id, Event.created_at, Event.id)
Index("ix_pipeline_events_state_created", Event.pipeline_id, Event.state, Event.created_at, Event.id)
Index("ix_pipeline_events_finished", Event.finished_at)


class RawFetch(Base):
    """Where an event's raw data was fetched to (fetched once, shared by every stage) and how often."""

    __tablename__ = "pipeline_raw_fetches"

    event_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("pipeline_events.id", ondelete="CASCADE"), primary_key=True
    )
    source: Mapped[str] = mapped_column(String(2000))
    kind: Mapped[str] = mapped_column(String(10))  # file | artifact | http
    location: Mapped[str] = mapped_column(String(2000))  # a path under the data dir, or an artifact key
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str | None] = mapped_column(String(200), default=None)
    fetches: Mapped[int] = mapped_column(Integer, default=1)  # times the source itself was read
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)


class StageRun(Base):
    """One stage on one event: its state, the batch that ran it, its output and how it went."""

    __tablename__ = "pipeline_stage_runs"
    __table_args__ = (UniqueConstraint("event_id", "stage"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(32), ForeignKey("pipeline_events.id", ondelete="CASCADE"))
    pipeline_id: Mapped[str] = mapped_column(
        String(32)
    )  # denormalised: the dispatcher and watchers group by it
    stage: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(20), default=StageState.PENDING)
    batch_id: Mapped[str | None] = mapped_column(String(32), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    writes: Mapped[int] = mapped_column(Integer, default=0)  # committed outputs (1 per completed run)
    fingerprint: Mapped[str | None] = mapped_column(String(64), default=None)  # the stage spec it ran
    cache_key: Mapped[str | None] = mapped_column(String(64), default=None)
    cached: Mapped[bool] = mapped_column(Boolean, default=False)  # served from the content-hash cache
    force: Mapped[bool] = mapped_column(Boolean, default=False)  # skip the cache on the next run
    output_key: Mapped[str | None] = mapped_column(String(1000), default=None)
    output_kind: Mapped[str | None] = mapped_column(String(10), default=None)  # json | array | image | bytes
    content_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    result: Mapped[Any | None] = mapped_column(JSON, default=None)  # small JSON outputs, inline
    ready_at: Mapped[datetime | None] = mapped_column(default=None)  # queued since / not before (retries)
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    duration_ms: Mapped[float | None] = mapped_column(Float, default=None)
    error_type: Mapped[str | None] = mapped_column(String(200), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    traceback: Mapped[str | None] = mapped_column(Text, default=None)
    logs_key: Mapped[str | None] = mapped_column(String(1000), default=None)
    archive_key: Mapped[str | None] = mapped_column(String(1000), default=None)


# the dispatcher's ready runs and each stage's oldest ready run come from this index alone
Index("ix_pipeline_stage_runs_queue", StageRun.state, StageRun.pipeline_id, StageRun.stage, StageRun.ready_at)
Index("ix_pipeline_stage_runs_batch", StageRun.batch_id)
Index("ix_pipeline_stage_runs_cache", StageRun.pipeline_id, StageRun.stage, StageRun.cache_key)
Index("ix_pipeline_stage_runs_finished", StageRun.pipeline_id, StageRun.finished_at)
# a pipeline's per-stage counts by state (its queue snapshot) come from this index alone
Index("ix_pipeline_stage_runs_counts", StageRun.pipeline_id, StageRun.stage, StageRun.state)
# the queue page's finished stage runs per minute and in the last hour come from this index alone
Index("ix_pipeline_stage_runs_state_finished", StageRun.state, StageRun.finished_at)
# failures grouped by stage and error type, their last time and their newest events come from this index
# (only runs with an error are in it), never from a scan of every run
Index(
    "ix_pipeline_stage_runs_errors",
    StageRun.pipeline_id,
    StageRun.stage,
    StageRun.error_type,
    StageRun.finished_at,
    StageRun.state,
    sqlite_where=StageRun.error_type.is_not(None),
    postgresql_where=StageRun.error_type.is_not(None),
)
