"""Job tables: a batch prediction (``jobs``) and its chunks (``job_chunks``), and their lifecycles."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.db import Base, new_id, utcnow


class JobState(StrEnum):
    """queued -> running -> succeeded | failed | cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def is_final(self) -> bool:
        """Whether the job has stopped (a retry may start it again)."""
        return self in JOB_TERMINAL


JOB_TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class ChunkState(StrEnum):
    """queued -> running -> done | failed (bad input, not retried) | dead (retries exhausted) | cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"

    def is_final(self) -> bool:
        """Whether the chunk has stopped."""
        return self in CHUNK_TERMINAL


CHUNK_TERMINAL = frozenset({ChunkState.DONE, ChunkState.FAILED, ChunkState.DEAD, ChunkState.CANCELLED})


class Job(Base):
    """A batch prediction over many rows: input in the artifact store, output written chunk by chunk."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    model: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20), default=JobState.QUEUED, index=True)
    input_kind: Mapped[str] = mapped_column(String(10))  # inline | upload | uri
    input_key: Mapped[str] = mapped_column(String(500))
    input_format: Mapped[str] = mapped_column(String(10))  # csv | jsonl | parquet | npy
    input_size: Mapped[int] = mapped_column(BigInteger, default=0)
    # small inline rows as .npy bytes, kept here instead of a file (``input_key`` then names no artifact)
    input_inline: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    # on_error, output_format, chunk_rows, max_attempts, retry_seconds, columns (CSV header), schedule
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    total_rows: Mapped[int | None] = mapped_column(BigInteger, default=None)
    rows_done: Mapped[int] = mapped_column(BigInteger, default=0)
    rows_failed: Mapped[int] = mapped_column(BigInteger, default=0)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    chunks_failed: Mapped[int] = mapped_column(Integer, default=0)
    # bumped by every retry; part of the workflow ids of that retry's work
    generation: Mapped[int] = mapped_column(Integer, default=0)
    # a queued job is claimed into a batch by one worker's dispatcher (see ``jobs.dispatch``)
    batch_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    error_code: Mapped[str | None] = mapped_column(String(50), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobChunk(Base):
    """One row range of a job; its output is written once under a key made of (job, index)."""

    __tablename__ = "job_chunks"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    index: Mapped[int] = mapped_column("chunk_index", Integer, primary_key=True)
    row_start: Mapped[int] = mapped_column(BigInteger)
    row_end: Mapped[int] = mapped_column(BigInteger)
    # CSV and JSONL: where the chunk's records start and end in the file (other formats seek by row)
    byte_start: Mapped[int | None] = mapped_column(BigInteger, default=None)
    byte_end: Mapped[int | None] = mapped_column(BigInteger, default=None)
    state: Mapped[str] = mapped_column(String(20), default=ChunkState.QUEUED, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # how many times a run reached the completion transaction; more than 1 means a chunk ran twice
    completions: Mapped[int] = mapped_column(Integer, default=0)
    output_key: Mapped[str | None] = mapped_column(String(500), default=None)
    # a small output (Parquet bytes up to ``job_inline_output_bytes``) is kept here instead of in a file
    output_inline: Mapped[bytes | None] = mapped_column(LargeBinary, default=None, deferred=True)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    rows_failed: Mapped[int] = mapped_column(Integer, default=0)
    row_errors: Mapped[list[Any]] = mapped_column(default=list)
    error_code: Mapped[str | None] = mapped_column(String(50), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    traceback: Mapped[str | None] = mapped_column(Text, default=None)
    executor_id: Mapped[str | None] = mapped_column(String(100), default=None)
    # the workflow a worker's dispatcher started for the chunk (or the job batch that runs a lone chunk)
    batch_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None, index=True)


# the queue page's finished jobs per minute and in the last hour come from this index alone
Index("ix_jobs_state_finished", Job.state, Job.finished_at)
