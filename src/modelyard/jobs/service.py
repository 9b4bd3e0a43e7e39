"""Jobs: submit, look up, list, cancel, retry, delete, results, dead letters.

No FastAPI and no DBOS here: jobs and chunks wait as rows that workers claim (``dispatch.py``), and
what a worker does with them lives in ``runner.py``.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Row, func, select, update
from sqlalchemy import delete as sa_delete
from sqlalchemy.orm import Session

from modelyard.db import aware, utcnow
from modelyard.durable import log
from modelyard.errors import BadRequest, Conflict, JobNotFound
from modelyard.jobs.dispatch import wake_chunks, wake_local
from modelyard.jobs.models import ChunkState, Job, JobChunk, JobState
from modelyard.jobs.schemas import (
    ChunkPublic,
    DeadLetter,
    JobError,
    JobInput,
    JobPublic,
    Progress,
)

if TYPE_CHECKING:
    from modelyard.context import AppContext

JOB_WORKFLOW, CHUNK_WORKFLOW = "jobs.run_jobs", "jobs.run_chunk"
API = "/api/v1/jobs"


def output_key(job_id: str, index: int) -> str:
    """Where a chunk's output is written; the same key on every attempt, so a repeat overwrites."""
    return f"jobs/{job_id}/out/{index:06d}.parquet"


PUBLISHED = (
    Job.id,
    Job.state,
    Job.rows_done,
    Job.rows_failed,
    Job.total_rows,
    Job.chunks_done,
    Job.chunk_count,
)


def event_data(job: Job | Row[Any]) -> dict[str, Any]:
    """What a job's events carry (a job, or a row of its ``PUBLISHED`` columns)."""
    return {
        "job_id": job.id,
        "state": job.state,
        "rows_done": job.rows_done,
        "rows_failed": job.rows_failed,
        "total_rows": job.total_rows,
        "chunks_done": job.chunks_done,
        "chunk_count": job.chunk_count,
    }


def job_event(topic: str, job: Job | Row[Any]) -> log.Append:
    """A job's event, for the event log."""
    return log.Append(topic, event_data(job), job.id)


def record(session: Session, topic: str, job: Job | Row[Any]) -> None:
    """Append a job's event to the event log, in the transaction that changed the job."""
    log.append_many(session, [job_event(topic, job)])


_TRACKED = 10_000  # jobs whose last progress event time a process remembers (then it starts afresh)


def progress_due(ctx: AppContext, job_id: str, finished: bool) -> bool:
    """Whether a job's progress is worth an event now: at most one per ``log.PROGRESS_SECONDS`` per job
    in this process (a finished job always gets its event, and is forgotten)."""
    last = ctx.job_progress_at
    if finished:
        last.pop(job_id, None)
        return True
    now = time.monotonic()
    if now - last.get(job_id, -log.PROGRESS_SECONDS) < log.PROGRESS_SECONDS:
        return False
    if len(last) >= _TRACKED:  # jobs cancelled or deleted mid-run are never seen finishing here
        last.clear()
    last[job_id] = now
    return True


def publish(ctx: AppContext, topic: str, job: Job | Row[Any]) -> None:
    """After the change committed, tell in-process subscribers (it wakes this process's event streams at
    once; the event log is what they read)."""
    ctx.bus.publish(topic, event_data(job))


# ---------------------------------------------------------------- reading


def get_job(*, session: Session, job_id: str) -> Job:
    """One job, or ``JobNotFound``."""
    job = session.get(Job, job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job


def list_jobs(
    *,
    session: Session,
    model: str | None = None,
    state: list[str] | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[Job], int]:
    """A page of jobs, newest first, and how many match in all."""
    conditions = []
    if model:
        conditions.append(Job.model == model)
    if state:
        unknown = [s for s in state if s not in set(JobState)]
        if unknown:
            raise BadRequest(f"unknown state(s) {unknown}; use {[s.value for s in JobState]}", field="state")
        conditions.append(Job.state.in_(state))
    if created_after:
        conditions.append(Job.created_at >= created_after)
    if created_before:
        conditions.append(Job.created_at < created_before)
    total = session.scalar(select(func.count()).select_from(Job).where(*conditions)) or 0
    rows = session.scalars(
        select(Job).where(*conditions).order_by(Job.created_at.desc(), Job.id).offset(offset).limit(limit)
    )
    return list(rows), total


def list_chunks(*, session: Session, job_id: str, state: str | None = None) -> list[JobChunk]:
    """The chunks of a job in order, optionally only those in one state."""
    get_job(session=session, job_id=job_id)
    query = select(JobChunk).where(JobChunk.job_id == job_id)
    if state:
        query = query.where(JobChunk.state == state)
    return list(session.scalars(query.order_by(JobChunk.index)))


def _progress(job: Job) -> Progress:
    total = job.total_rows
    handled = job.rows_done + job.rows_failed
    rate = eta = None
    if job.started_at is not None:
        elapsed = (aware(job.finished_at or utcnow()) - aware(job.started_at)).total_seconds()
        if elapsed > 0 and handled:
            rate = handled / elapsed
            if total is not None and not JobState(job.state).is_final():
                eta = max(total - handled, 0) / rate
    return Progress(
        total_rows=total,
        rows_done=job.rows_done,
        rows_failed=job.rows_failed,
        fraction=min(handled / total, 1.0) if total else (1.0 if job.state == JobState.SUCCEEDED else 0.0),
        chunk_count=job.chunk_count,
        chunks_done=job.chunks_done,
        chunks_failed=job.chunks_failed,
        rows_per_second=rate,
        eta_seconds=eta,
    )


def job_public(job: Job) -> JobPublic:
    """The wire form of a job, with its progress and links."""
    base = f"{API}/{job.id}"
    duration = None
    if job.started_at is not None:
        duration = (aware(job.finished_at or utcnow()) - aware(job.started_at)).total_seconds()
    return JobPublic(
        id=job.id,
        model=job.model,
        version=job.version,
        state=JobState(job.state).value,
        input=JobInput.model_validate(
            {
                "kind": job.input_kind,
                "format": job.input_format,
                "uri": None if job.input_inline is not None else job.input_key,
                "size": job.input_size,
            }
        ),
        options={k: v for k, v in job.options.items() if k != "layout"},
        progress=_progress(job),
        error=JobError(code=job.error_code or "failed", detail=job.error) if job.error else None,
        created_at=aware(job.created_at),
        started_at=aware(job.started_at),
        finished_at=aware(job.finished_at),
        duration_seconds=duration,
        links={
            "self": base,
            "results": f"{base}/results",
            "events": f"{base}/events",
            "chunks": f"{base}/chunks",
        },
    )


def chunk_public(chunk: JobChunk) -> ChunkPublic:
    """The wire form of a chunk."""
    return ChunkPublic(
        index=chunk.index,
        state=ChunkState(chunk.state).value,
        row_start=chunk.row_start,
        row_end=chunk.row_end,
        rows=chunk.rows,
        rows_failed=chunk.rows_failed,
        row_errors=chunk.row_errors,
        attempts=chunk.attempts,
        error_code=chunk.error_code,
        error=chunk.error,
        traceback=chunk.traceback,
        executor_id=chunk.executor_id,
        started_at=aware(chunk.started_at),
        finished_at=aware(chunk.finished_at),
    )


# ---------------------------------------------------------------- control


def cancel(ctx: AppContext, job_id: str) -> Job:
    """Stop a queued or running job: its waiting work is cancelled, running chunks stop at their end."""
    with ctx.uow() as session:
        job = get_job(session=session, job_id=job_id)
        if job.state == JobState.CANCELLED:
            return job
        if JobState(job.state).is_final():
            raise Conflict(f"job {job_id} already {job.state}; only queued or running jobs can be cancelled")
        job.state, job.finished_at, job.updated_at = JobState.CANCELLED, utcnow(), utcnow()
        session.execute(
            update(JobChunk)
            .where(JobChunk.job_id == job_id, JobChunk.state == ChunkState.QUEUED)
            .values(state=ChunkState.CANCELLED)
        )
        record(session, "jobs.finished", job)
    publish(ctx, "jobs.finished", job)
    return job


def retry(ctx: AppContext, job_id: str, indexes: list[int] | None = None) -> Job:
    """Run again what did not succeed: failed, dead and cancelled chunks (or only ``indexes``).

    A job that never got as far as planning is planned again. Chunks already done are kept.
    """
    with ctx.uow() as session:
        job = get_job(session=session, job_id=job_id)
        if not JobState(job.state).is_final() and indexes is None:
            raise Conflict(f"job {job_id} is {job.state}; wait for it to finish or cancel it first")
        if job.state == JobState.SUCCEEDED:
            raise Conflict(f"job {job_id} succeeded; there is nothing to retry")
        rerun = [ChunkState.FAILED, ChunkState.DEAD, ChunkState.CANCELLED, ChunkState.QUEUED]
        query = select(JobChunk).where(JobChunk.job_id == job_id, JobChunk.state.in_(rerun))
        if indexes is not None:
            query = query.where(JobChunk.index.in_(indexes))
        chunks = list(session.scalars(query.order_by(JobChunk.index)))
        if indexes is not None and len(chunks) != len(set(indexes)):
            raise Conflict(f"chunk(s) {indexes} of job {job_id} are not failed, dead or cancelled")
        job.generation += 1
        job.error, job.error_code, job.finished_at, job.updated_at = None, None, None, utcnow()
        failed = sum(1 for c in chunks if c.state in (ChunkState.FAILED, ChunkState.DEAD))
        job.chunks_failed -= failed
        job.state = JobState.RUNNING if job.chunk_count else JobState.QUEUED
        job.batch_id, job.claimed_at = None, None  # an unplanned job waits to be claimed again
        for chunk in chunks:
            chunk.state, chunk.error, chunk.error_code, chunk.traceback = ChunkState.QUEUED, None, None, None
            chunk.queued_at, chunk.finished_at = utcnow(), None
            chunk.batch_id, chunk.claimed_at = None, None  # waits for any worker's chunk dispatcher
        record(session, "jobs.queued", job)
    wake_local(ctx)
    wake_chunks(ctx)
    publish(ctx, "jobs.queued", job)
    return job


def delete(ctx: AppContext, job_id: str) -> None:
    """Delete a job, its stored input (not a ``uri`` input) and every output; a live job is cancelled."""
    with ctx.uow() as session:
        job = get_job(session=session, job_id=job_id)
        session.execute(sa_delete(JobChunk).where(JobChunk.job_id == job_id))
        record(session, "jobs.deleted", job)
        session.delete(job)
    ctx.storage.delete_prefix(f"jobs/{job_id}")


def results(ctx: AppContext, job_id: str) -> tuple[Job, Iterator[pa.Table]]:
    """A succeeded job and its chunk tables in row order, read one at a time."""
    with ctx.uow() as session:
        job = get_job(session=session, job_id=job_id)
        if job.state != JobState.SUCCEEDED:
            raise Conflict(f"job {job_id} is {job.state}; results are there once it has succeeded")
        parts = session.execute(
            select(JobChunk.index, JobChunk.output_key)
            .where(JobChunk.job_id == job_id, JobChunk.state == ChunkState.DONE, JobChunk.rows > 0)
            .order_by(JobChunk.index)
        ).all()

    def tables() -> Iterator[pa.Table]:
        for index, key in parts:
            if key is not None:
                data = ctx.storage.get_bytes(str(key))
            else:  # a small output, kept in the chunk's row (read one at a time)
                with ctx.uow() as session:
                    data = session.scalar(
                        select(JobChunk.output_inline).where(
                            JobChunk.job_id == job_id, JobChunk.index == index
                        )
                    )
                if data is None:
                    raise Conflict(f"chunk {index} of job {job_id} has no output; retry the job")
            yield pq.read_table(io.BytesIO(data))

    return job, tables()


def list_dead_letters(*, session: Session, offset: int = 0, limit: int = 100) -> tuple[list[DeadLetter], int]:
    """Chunks that failed every attempt, newest first."""
    where = JobChunk.state == ChunkState.DEAD
    total = session.scalar(select(func.count()).select_from(JobChunk).where(where)) or 0
    rows = session.execute(
        select(JobChunk, Job.model, Job.version)
        .join(Job, Job.id == JobChunk.job_id)
        .where(where)
        .order_by(JobChunk.finished_at.desc())
        .offset(offset)
        .limit(limit)
    ).all()
    items = [
        DeadLetter(
            job_id=c.job_id,
            index=c.index,
            model=model,
            version=version,
            row_start=c.row_start,
            row_end=c.row_end,
            attempts=c.attempts,
            error_code=c.error_code,
            error=c.error,
            traceback=c.traceback,
            failed_at=aware(c.finished_at),
            retry=f"/api/v1/queues/dead-letters/{c.job_id}/{c.index}/retry",
        )
        for c, model, version in rows
    ]
    return items, total
