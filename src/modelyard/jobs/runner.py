"""What a worker does with a job: plan it into chunks, run one chunk, give up on one, settle the job.

Each function is one step of a workflow (``workflows.py``) and is safe to run again after a crash:
planning inserts the chunks once, a chunk writes its output to the same key on every attempt (an
atomic overwrite), and its completion is counted once (a guarded UPDATE in the same transaction).
Steps return an outcome dict instead of raising, so nothing depends on pickling our exceptions:
``{"status": "ok" | "done" | "failed" | "retry" | "stop", ...}``.
"""

from __future__ import annotations

import logging
import shutil
import time
import traceback
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa
from sqlalchemy import ColumnElement, CursorResult, case, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelyard.db import new_id, utcnow
from modelyard.durable import log as event_log
from modelyard.errors import BadRequest, ModelyardError
from modelyard.jobs import inputs, readers, sizing
from modelyard.jobs.models import ChunkState, Job, JobChunk, JobState
from modelyard.jobs.outputs import chunk_table, table_bytes, write_table
from modelyard.jobs.service import PUBLISHED, job_event, output_key, progress_due, publish, record

if TYPE_CHECKING:
    from modelyard.context import AppContext
    from modelyard.serving.service import VersionRef

log = logging.getLogger("modelyard.jobs")
Outcome = dict[str, Any]
SHOWN_ROW_ERRORS = 5


def _open_chunk(job_id: str, index: int) -> tuple[ColumnElement[bool], ...]:
    """The chunk, while nobody has finished it: guards every state change so a repeat changes nothing."""
    return (
        JobChunk.job_id == job_id,
        JobChunk.index == index,
        JobChunk.state.in_([ChunkState.QUEUED, ChunkState.RUNNING]),
    )


def _rowcount(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


def _txn(ctx: AppContext) -> AbstractContextManager[Session]:
    """A unit of work on the database's writer path (on SQLite this process's job steps take turns)."""
    return ctx.db.writer()


def _write(session: Session, statement: Any) -> Any:
    """Run an UPDATE without matching it against objects in the session (they are not used after)."""
    return session.execute(statement, execution_options={"synchronize_session": False})


def _snapshot(session: Session, job_id: str) -> Any:
    """The job's fields that events carry."""
    return session.execute(select(*PUBLISHED).where(Job.id == job_id)).first()


def transient(exc: BaseException) -> Outcome:
    """A failure worth retrying (I/O, a lost connection, the model runtime out of memory, a bug): its
    code, message and traceback."""
    return {
        "status": "retry",
        "code": exc.code if isinstance(exc, ModelyardError) else "internal",
        "error": f"{type(exc).__name__}: {exc}",
        "traceback": "".join(traceback.format_exception(exc)),
    }


def _policy(job: Job) -> dict[str, Any]:
    """How often and how patiently the job's work is retried (fixed when the job was submitted)."""
    return {
        "max_attempts": int(job.options.get("max_attempts", 3)),
        "retry_seconds": float(job.options.get("retry_seconds", 1.0)),
        "generation": job.generation,
    }


def _permanent(exc: BaseException) -> bool:
    """Bad input or a missing model cannot get better by retrying; other errors might."""
    return isinstance(exc, ModelyardError) and exc.status < 500


def local_input(ctx: AppContext, job: Job) -> inputs.Source:
    """The job's input: the rows kept in its row, or a local file (in place on local storage, else
    fetched once into the cache)."""
    if job.input_inline is not None:
        return job.input_inline
    path = ctx.storage.local_path(job.input_key)
    if path is not None:
        return path
    target = ctx.settings.data_dir / "cache" / "jobs" / job.id / f"input.{job.input_format}"
    if not target.exists():
        ctx.storage.download_to(job.input_key, target)
    return target


def _fail_job(ctx: AppContext, job_id: str, code: str, detail: str) -> None:
    with _txn(ctx) as session:
        failed = _write(
            session,
            update(Job)
            .where(Job.id == job_id, Job.state.in_([JobState.QUEUED, JobState.RUNNING]))
            .values(
                state=JobState.FAILED,
                error_code=code,
                error=detail,
                finished_at=utcnow(),
                updated_at=utcnow(),
            ),
        )
        job = session.get(Job, job_id)
        if job is not None and _rowcount(failed):  # a repeat of this step logs nothing more
            record(session, "jobs.finished", job)
    if job is not None:
        publish(ctx, "jobs.finished", job)


# ---------------------------------------------------------------- planning


def plan_job(ctx: AppContext, job_id: str, claim_first: int = 0) -> Outcome:
    """Split the job's input into chunks (once) and mark it running; ``stop`` if it cannot run.

    The first ``claim_first`` chunks of a job of several are claimed in the same transaction, each under
    a new claim id, for the caller to start (``claims``: [claim id, chunk index] each)."""
    with _txn(ctx) as session:
        job = session.get(Job, job_id)
        if job is None or job.state not in (JobState.QUEUED, JobState.RUNNING):
            return {"status": "stop"}
        if job.chunk_count:
            return {"status": "ok", "chunks": job.chunk_count, **_policy(job)}
        session.expunge(job)
    try:
        ref = resolve(ctx, job.model, job.version)
        features = inputs.Features.from_signature(ref.signature, ref.metadata)
        path = local_input(ctx, job)
        layout = inputs.inspect(path, job.input_format, features)
        spans = _plan(ctx, job, ref, features, path, layout)
        if not spans:
            raise BadRequest("the input file has no rows", field="file")
    except Exception as exc:
        if not _permanent(exc):
            return {**transient(exc), **_policy(job)}
        assert isinstance(exc, ModelyardError)
        _fail_job(ctx, job_id, exc.code, exc.detail)
        return {"status": "stop"}
    options = {**job.options, "layout": {"header": layout.header, "fields": layout.fields}}
    try:
        with _txn(ctx) as session:
            won = _write(
                session,
                update(Job)
                .where(Job.id == job_id, Job.state == JobState.QUEUED, Job.chunk_count == 0)
                .values(
                    state=JobState.RUNNING,
                    started_at=utcnow(),
                    updated_at=utcnow(),
                    total_rows=spans[-1].row_end,
                    chunk_count=len(spans),
                    options=options,
                ),
            )
            if not _rowcount(won):
                return {"status": "stop"}
            # a lone chunk is run by the planning workflow itself: claimed by its batch, nobody else takes it
            lone = len(spans) == 1 and job.batch_id is not None
            claims = {} if lone else {i: new_id() for i in range(min(claim_first, len(spans)))}
            now = utcnow()
            session.add_all(
                JobChunk(
                    job_id=job_id,
                    index=i,
                    row_start=s.row_start,
                    row_end=s.row_end,
                    byte_start=s.byte_start,
                    byte_end=s.byte_end,
                    batch_id=job.batch_id if lone else claims.get(i),
                    claimed_at=now if lone or i in claims else None,
                )
                for i, s in enumerate(spans)
            )
            session.flush()
            started = _snapshot(session, job_id)
            if started is not None:
                record(session, "jobs.started", started)
    except IntegrityError:  # a concurrent run of this step planned it first
        return plan_job(ctx, job_id)
    if started is not None:
        publish(ctx, "jobs.started", started)
    claimed = [[claim_id, index] for index, claim_id in claims.items()]
    return {"status": "ok", "chunks": len(spans), "claims": claimed, **_policy(job)}


def _plan(
    ctx: AppContext,
    job: Job,
    ref: VersionRef,
    features: inputs.Features,
    path: inputs.Source,
    layout: inputs.Layout,
) -> list[inputs.Span]:
    """The job's spans: of its ``chunk_rows``, or, when the server chose that and a chunk of it would cost
    more than a worker slot's share of time (``sizing``), planned at a fine grain and joined into chunks
    of at most ``job_chunk_seconds`` each, at least one per worker slot."""
    rows = int(job.options["chunk_rows"])
    few = job.total_rows is not None and job.total_rows < 2 * sizing.MIN_ROWS  # one chunk whatever it costs
    cost = sizing.row_cost(ctx, ref, features) if job.options.get("chunk_auto") and not few else None
    if cost is None or not sizing.costly(ctx, cost, min(rows, job.total_rows or rows)):
        return inputs.plan(path, job.input_format, rows, layout)
    spans = inputs.plan(path, job.input_format, sizing.MIN_ROWS, layout)
    total = spans[-1].row_end if spans else 0
    return sizing.merge(spans, sizing.spread_rows(ctx, cost, total, rows) // sizing.MIN_ROWS)


# ---------------------------------------------------------------- one chunk


def _start_chunk(
    ctx: AppContext, job_id: str, index: int, executor_id: str | None
) -> tuple[Job, JobChunk] | Outcome:
    """Mark the chunk running (one more attempt) and return the job and chunk, or an outcome to return at
    once if it must not run."""
    with _txn(ctx) as session:
        job = session.get(Job, job_id)
        if job is None or job.state != JobState.RUNNING:
            _write(
                session,
                update(JobChunk).where(*_open_chunk(job_id, index)).values(state=ChunkState.CANCELLED),
            )
            return {"status": "stop"}
        reported = _reported(session, job_id, index)  # by an attempt that died mid-chunk
        started = _write(
            session,
            update(JobChunk)
            .where(*_open_chunk(job_id, index))
            .values(
                state=ChunkState.RUNNING,
                attempts=JobChunk.attempts + 1,
                started_at=utcnow(),
                executor_id=executor_id,
                rows=0,
            ),
        )
        if not _rowcount(started):
            return {"status": "stop"}  # done already (a repeat), or gone with its job
        _take_back(session, job_id, reported)
        chunk = session.get_one(JobChunk, (job_id, index))
        session.expunge_all()
    return job, chunk


def resolve(ctx: AppContext, model: str, version: int) -> VersionRef:
    """The model version, from serving's short-lived lookup cache (versions are immutable; a deleted one
    is noticed within its lifetime)."""
    return ctx.inference.resolve_cached_sync(model, version)


def run_chunk(ctx: AppContext, job_id: str, index: int, executor_id: str | None = None) -> Outcome:
    """Read the chunk's rows, predict, write the output once, and record the chunk done."""
    started = _start_chunk(ctx, job_id, index, executor_id)
    if isinstance(started, dict):
        return started
    job, chunk = started
    done = work_chunk(ctx, job, chunk)
    if isinstance(done, dict):
        return done
    _complete(ctx, job_id, index, *done)
    return {"status": "done", "rows": done[0]}


# rows done, row errors, output key (a file) or output bytes (small: kept in the chunk's row)
Done = tuple[int, list[tuple[int, str]], str | None, bytes | None]


def work_chunk(ctx: AppContext, job: Job, chunk: JobChunk) -> Done | Outcome:
    """The work of a started chunk: read, predict, write the output under its key (or keep a small one
    for the chunk's row). What to record (``Done``), or the outcome of a failure (already recorded)."""
    try:
        ref = resolve(ctx, job.model, job.version)
        features = inputs.Features.from_signature(ref.signature, ref.metadata)
        layout = inputs.Layout(**job.options.get("layout", {}))
        span = inputs.Span(chunk.row_start, chunk.row_end, chunk.byte_start, chunk.byte_end)
        rows = readers.read_span(local_input(ctx, job), job.input_format, span, features, layout)
        if rows.errors and job.options.get("on_error") != "skip":
            return _bad_rows(ctx, job, chunk, rows.errors)
        key, inline = None, None
        if len(rows.rows):
            outputs = _predict(ctx, job.id, chunk.index, ref, features, rows.values)
            key, inline = _keep_output(ctx, job.id, chunk.index, chunk_table(rows.rows, outputs))
    except Exception as exc:
        if _permanent(exc):
            assert isinstance(exc, ModelyardError)
            _chunk_failed(ctx, job.id, chunk.index, ChunkState.FAILED, exc.code, exc.detail, None, [])
            return {"status": "failed", "error": exc.detail}
        outcome = {**transient(exc), **_policy(job)}
        _chunk_retrying(ctx, job.id, chunk.index, outcome)
        return outcome
    return len(rows.rows), rows.errors, key, inline


def _predict(
    ctx: AppContext, job_id: str, index: int, ref: VersionRef, features: inputs.Features, values: Any
) -> dict[str, Any]:
    """The chunk's outputs, run in sub-batches of about ``sizing.PROGRESS_SECONDS`` for a model slow per
    row (its rows done reported between them, at most that often), in one run for a fast one."""
    total = len(values)
    cost = sizing.row_cost(ctx, ref, features) if total >= 2 * sizing.MIN_ROWS else None
    step = sizing.step_rows(cost, total)
    parts, reported, last = [], 0, time.monotonic()
    for start in range(0, total, step):
        part = values[start : start + step]
        cpu = time.thread_time()
        parts.append(ctx.inference.predict_sync(ref, {features.input_name: part}))
        sizing.observe(ctx, ref.key, len(part), time.thread_time() - cpu)
        done = start + len(part)
        if done < total and time.monotonic() - last >= sizing.PROGRESS_SECONDS:
            reported, last = _progress(ctx, job_id, index, done, reported), time.monotonic()
    return sizing.concat(parts)


def _progress(ctx: AppContext, job_id: str, index: int, done: int, reported: int) -> int:
    """Count rows a running chunk has done so far into its job (the chunk's ``rows`` holds what it has
    reported; its completion counts only the rest). What is reported now."""
    with _txn(ctx) as session:
        moved = _write(
            session,
            update(JobChunk)
            .where(
                *_open_chunk(job_id, index), JobChunk.state == ChunkState.RUNNING, JobChunk.rows == reported
            )
            .values(rows=done),
        )
        if not _rowcount(moved):
            return reported  # stopped meanwhile (cancelled, or taken over): nothing more to say
        _write(
            session,
            update(Job)
            .where(Job.id == job_id)
            .values(rows_done=Job.rows_done + (done - reported), updated_at=utcnow()),
        )
        job = _snapshot(session, job_id)
    if job is not None:
        publish(ctx, "jobs.progress", job)
    return done


def _reported(session: Session, job_id: str, index: int) -> int:
    """Rows a chunk not yet done has counted into its job while running (``_progress``)."""
    found = session.scalar(
        select(JobChunk.rows).where(
            JobChunk.job_id == job_id, JobChunk.index == index, JobChunk.state != ChunkState.DONE
        )
    )
    return int(found or 0)


def _take_back(session: Session, job_id: str, rows: int) -> None:
    """Uncount rows a chunk reported and will not finish (it failed, or starts again)."""
    if rows:
        _write(session, update(Job).where(Job.id == job_id).values(rows_done=Job.rows_done - rows))


Kept = tuple[str | None, bytes | None]  # an output's key (a file), or its bytes (small: kept in the row)


def _keep_output(ctx: AppContext, job_id: str, index: int, table: pa.Table) -> Kept:
    """A small output as bytes for the chunk's row (committed with its completion: no file to write and
    sync); a bigger one encoded straight into its file under the chunk's key. (key, inline bytes)."""
    limit = ctx.settings.job_inline_output_bytes
    if table.nbytes <= limit:
        data = table_bytes(table)
        if len(data) <= limit:
            return None, data
    key = output_key(job_id, index)
    with ctx.storage.writing(key) as path:
        write_table(table, path)
    return key, None


def _row_errors(ctx: AppContext, errors: list[tuple[int, str]]) -> list[dict[str, Any]]:
    return [{"row": row, "error": msg} for row, msg in errors[: ctx.settings.job_row_errors_kept]]


def _bad_rows(ctx: AppContext, job: Job, chunk: JobChunk, errors: list[tuple[int, str]]) -> Outcome:
    shown = "; ".join(msg for _, msg in errors[:SHOWN_ROW_ERRORS])
    more = f" (and {len(errors) - SHOWN_ROW_ERRORS} more)" if len(errors) > SHOWN_ROW_ERRORS else ""
    detail = f"{len(errors)} malformed row(s) in rows {chunk.row_start}-{chunk.row_end - 1}: {shown}{more}"
    listed = _row_errors(ctx, errors)
    _chunk_failed(ctx, job.id, chunk.index, ChunkState.FAILED, "malformed-rows", detail, None, listed)
    return {"status": "failed", "error": detail}


def record_done(
    ctx: AppContext,
    session: Session,
    job_id: str,
    index: int,
    rows: int,
    errors: list[tuple[int, str]],
    key: str | None,
    inline: bytes | None = None,
) -> tuple[bool, Any]:
    """In ``session``: count the chunk's completion once, settle its job; (job finished now, job snapshot)."""
    where = (JobChunk.job_id == job_id, JobChunk.index == index)
    _write(session, update(JobChunk).where(*where).values(completions=JobChunk.completions + 1))
    reported = _reported(session, job_id, index)  # read under the lock the update above took
    done = _write(
        session,
        update(JobChunk)
        .where(*where, JobChunk.state == ChunkState.RUNNING)
        .values(
            state=ChunkState.DONE,
            rows=rows,
            rows_failed=len(errors),
            row_errors=_row_errors(ctx, errors),
            output_key=key,
            output_inline=inline,
            error=None,
            error_code=None,
            traceback=None,
            finished_at=utcnow(),
        ),
    )
    if _rowcount(done):
        _write(
            session,
            update(Job)
            .where(Job.id == job_id)
            .values(
                rows_done=Job.rows_done + (rows - reported),
                rows_failed=Job.rows_failed + len(errors),
                chunks_done=Job.chunks_done + 1,
                updated_at=utcnow(),
            ),
        )
    finished = settle(session, job_id)
    return finished, _snapshot(session, job_id)


def done_event(ctx: AppContext, job_id: str, finished: bool, job: Any) -> list[event_log.Append]:
    """The event log's entry for a recorded completion: the job's end, or its progress when one is due."""
    if job is None or not progress_due(ctx, job_id, finished):
        return []
    return [job_event("jobs.finished" if finished else "jobs.progress", job)]


def announce_done(ctx: AppContext, job_id: str, finished: bool, job: Any, key: str | None) -> None:
    """After the completion committed: tell subscribers; a job deleted meanwhile leaves no output behind."""
    if job is None:
        if key is not None:
            ctx.storage.delete(key)
        return
    publish(ctx, "jobs.finished" if finished else "jobs.progress", job)
    if finished:
        _drop_cache(ctx, job_id)


def _complete(
    ctx: AppContext,
    job_id: str,
    index: int,
    rows: int,
    errors: list[tuple[int, str]],
    key: str | None,
    inline: bytes | None,
) -> None:
    with _txn(ctx) as session:
        finished, job = record_done(ctx, session, job_id, index, rows, errors, key, inline)
        event_log.append_many(session, done_event(ctx, job_id, finished, job))
    announce_done(ctx, job_id, finished, job, key)


def _chunk_retrying(ctx: AppContext, job_id: str, index: int, outcome: Outcome) -> None:
    with _txn(ctx) as session:
        reported = _reported(session, job_id, index)
        requeued = _write(
            session,
            update(JobChunk)
            .where(JobChunk.job_id == job_id, JobChunk.index == index, JobChunk.state == ChunkState.RUNNING)
            .values(
                state=ChunkState.QUEUED,
                error_code=outcome.get("code", "internal"),
                error=outcome["error"],
                traceback=outcome["traceback"],
                rows=0,
            ),
        )
        if _rowcount(requeued):
            _take_back(session, job_id, reported)
    log.warning(
        "job chunk failed; it will be retried",
        extra={
            "job_id": job_id,
            "chunk": index,
            "detail": outcome["error"],
            "traceback": outcome["traceback"],
        },
    )


def _chunk_failed(
    ctx: AppContext,
    job_id: str,
    index: int,
    state: ChunkState,
    code: str,
    detail: str,
    trace: str | None,
    row_errors: list[dict[str, Any]],
) -> None:
    """Record a chunk as failed (bad input: the job fails now) or dead (retries exhausted)."""
    with _txn(ctx) as session:
        reported = _reported(session, job_id, index)
        marked = _write(
            session,
            update(JobChunk)
            .where(*_open_chunk(job_id, index))
            .values(
                rows=0,
                state=state,
                error_code=code,
                error=detail,
                traceback=trace,
                row_errors=row_errors,
                rows_failed=len(row_errors),
                finished_at=utcnow(),
            ),
        )
        finished = False
        if _rowcount(marked):
            _take_back(session, job_id, reported)
            _write(
                session,
                update(Job)
                .where(Job.id == job_id)
                .values(
                    chunks_failed=Job.chunks_failed + 1,
                    error_code=func.coalesce(Job.error_code, code),
                    error=func.coalesce(Job.error, f"chunk {index}: {detail}"),
                    updated_at=utcnow(),
                ),
            )
            if state == ChunkState.FAILED:  # bad input fails the job at once; the other chunks stop
                failed = _write(
                    session,
                    update(Job)
                    .where(Job.id == job_id, Job.state == JobState.RUNNING)
                    .values(state=JobState.FAILED, finished_at=utcnow()),
                )
                finished = bool(_rowcount(failed))
            finished = settle(session, job_id) or finished
        job = _snapshot(session, job_id)
        event_log.append_many(session, done_event(ctx, job_id, finished, job))
    log.warning(
        "job chunk %s",
        state.value,
        extra={"job_id": job_id, "chunk": index, "code": code, "detail": detail, "traceback": trace},
    )
    if job is not None:
        publish(ctx, "jobs.finished" if finished else "jobs.progress", job)


def chunk_dead(ctx: AppContext, job_id: str, index: int, error: str, trace: str | None) -> None:
    """The chunk failed its last attempt: it becomes a dead letter (listed, re-submittable)."""
    _chunk_failed(ctx, job_id, index, ChunkState.DEAD, "retries-exhausted", error, trace, [])


def planning_dead(ctx: AppContext, job_id: str, error: str) -> None:
    """Planning failed its last attempt: the job fails with that error."""
    _fail_job(ctx, job_id, "retries-exhausted", f"the job could not be planned: {error}")


def settle(session: Session, job_id: str) -> bool:
    """Finish a running job whose chunks have all stopped (failed if any failed); True if this call did."""
    failed = Job.chunks_failed > 0
    result = _write(
        session,
        update(Job)
        .where(
            Job.id == job_id,
            Job.state == JobState.RUNNING,
            Job.chunks_done + Job.chunks_failed >= Job.chunk_count,
        )
        .values(
            state=case((failed, JobState.FAILED.value), else_=JobState.SUCCEEDED.value),
            finished_at=utcnow(),
            updated_at=utcnow(),
        ),
    )
    return bool(_rowcount(result))


def _drop_cache(ctx: AppContext, job_id: str) -> None:
    cache = ctx.settings.data_dir / "cache" / "jobs" / job_id
    if cache.exists():  # only inputs fetched from a remote store are cached
        shutil.rmtree(cache, ignore_errors=True)
