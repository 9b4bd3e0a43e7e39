"""Submitting jobs: resolve the model version, check the input, store it, record the job.

The job's row is its place in the queue (workers claim queued rows, see ``jobs.dispatch``), so recording
it is the one write that queues it. Nothing is left behind by a refused submission: the input is checked
before it is stored, and a job whose row cannot be written has its stored input removed.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelyard.db import new_id
from modelyard.errors import PayloadTooLarge
from modelyard.jobs import inputs, sizing
from modelyard.jobs.dispatch import wake_local
from modelyard.jobs.models import Job
from modelyard.jobs.outputs import OUTPUT_FORMATS
from modelyard.jobs.schemas import JobCreate, JobOptions
from modelyard.jobs.service import publish, record
from modelyard.jobs.streaming import StreamedRows, write_npy
from modelyard.storage import ObjectInfo

if TYPE_CHECKING:
    from modelyard.context import AppContext


def _features(ctx: AppContext, model: str, version: int | str) -> tuple[int, inputs.Features]:
    """The version a job will run (``latest`` resolved now) and the rows it takes; through serving's
    short-lived lookup cache, as a predict request would."""
    ref = ctx.inference.resolve_cached_sync(model, version)
    return ref.version, inputs.Features.from_signature(ref.signature, ref.metadata)


# Bounds of automatic chunk sizes: a chunk small enough to retry cheaply, big enough to amortise its
# bookkeeping (two transactions, one durable workflow, one output file).
AUTO_CHUNK_ROWS = (sizing.MIN_ROWS, 500_000)
DYNAMIC_WIDTH_CHUNK_ROWS = 50_000


def chunk_rows(ctx: AppContext, options: JobOptions, features: inputs.Features) -> int:
    """Rows per chunk: the job's own choice, the server's setting, or ``job_chunk_bytes`` of model input."""
    if options.chunk_rows or ctx.settings.job_chunk_rows:
        return options.chunk_rows or ctx.settings.job_chunk_rows
    if features.width is None:
        return DYNAMIC_WIDTH_CHUNK_ROWS
    rows = ctx.settings.job_chunk_bytes // (features.width * features.dtype.itemsize)
    return max(AUTO_CHUNK_ROWS[0], min(AUTO_CHUNK_ROWS[1], rows))


def _options(
    ctx: AppContext, options: JobOptions, features: inputs.Features, fmt: str, kind: str
) -> dict[str, Any]:
    default = fmt if fmt in OUTPUT_FORMATS else ("jsonl" if kind == "inline" else "parquet")
    return {
        "on_error": options.on_error,
        "output_format": options.output_format or default,
        "chunk_rows": chunk_rows(ctx, options, features),
        # chosen by the server, so planning may cut it further for a model slow per row (``sizing``)
        "chunk_auto": not (options.chunk_rows or ctx.settings.job_chunk_rows),
        "max_attempts": ctx.settings.job_max_attempts,
        "retry_seconds": ctx.settings.job_retry_seconds,
    }


def _queue(ctx: AppContext, job: Job) -> Job:
    """Record a new job (which queues it) and wake this process's dispatcher if it has one."""
    with ctx.uow() as session:
        session.add(job)
        session.flush()
        record(session, "jobs.queued", job)
    wake_local(ctx)
    publish(ctx, "jobs.queued", job)
    return job


def submit(
    ctx: AppContext,
    data: JobCreate,
    *,
    job_id: str | None = None,
    source: dict[str, Any] | None = None,
    rows: Any = None,
) -> Job:
    """Submit inline rows (stored as .npy) or a file already in the artifact store (``uri``).

    With ``job_id`` the submission is idempotent: a job of that id that exists already is returned.
    ``source`` (e.g. the schedule and slot that started it) is kept in the job's options. ``rows``, when
    given, are the inline rows parsed apart from ``data`` (``inputs.read_request``, a large prediction), or
    read as the body streamed in (``streaming.StreamedRows``).
    """
    if job_id is not None:
        with ctx.uow() as session:
            if (existing := session.get(Job, job_id)) is not None:
                return existing
    version, features = _features(ctx, data.model, data.version)
    if data.uri is not None:
        return _submit_uri(ctx, data, version, features, job_id or new_id(), source or {})
    rows = (data.rows or []) if rows is None else rows
    if isinstance(rows, StreamedRows):
        return _submit_streamed(ctx, data, version, features, rows, job_id or new_id(), source or {})
    _check_count(ctx, len(rows) if isinstance(rows, list | np.ndarray) else None)
    arr = inputs.inline_array(rows, features)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    npy = buf.getvalue()
    job_id = job_id or new_id()
    kept = npy if len(npy) <= ctx.settings.job_inline_input_bytes else None  # no file to write and sync
    if kept is None:
        ctx.storage.put_bytes(f"jobs/{job_id}/input.npy", npy)
    return _queue_inline(ctx, data, version, features, job_id, source, kept, len(npy), len(arr))


def _check_count(ctx: AppContext, count: int | None) -> None:
    cap = ctx.settings.max_inline_rows
    if count is not None and cap is not None and count > cap:
        raise PayloadTooLarge(f"{count} inline rows is over the limit of {cap}; upload a file", field="rows")


def _submit_streamed(
    ctx: AppContext,
    data: JobCreate,
    version: int,
    features: inputs.Features,
    rows: StreamedRows,
    job_id: str,
    source: dict[str, Any],
) -> Job:
    """Inline rows read as the body streamed in (``jobs.streaming``), written as .npy a block at a time."""
    _check_count(ctx, rows.count)
    inputs.check_row_width(rows.width, features)
    path = rows.path.with_suffix(".npy")
    try:
        size = write_npy(rows, features.dtype, path)
        kept = path.read_bytes() if size <= ctx.settings.job_inline_input_bytes else None
        if kept is None:
            ctx.storage.put_file(f"jobs/{job_id}/input.npy", path)
    finally:
        path.unlink(missing_ok=True)
    return _queue_inline(ctx, data, version, features, job_id, source, kept, size, rows.count)


def _queue_inline(
    ctx: AppContext,
    data: JobCreate,
    version: int,
    features: inputs.Features,
    job_id: str,
    source: dict[str, Any] | None,
    kept: bytes | None,
    size: int,
    total_rows: int,
) -> Job:
    """Record a job over inline rows already stored (or ``kept`` in its row when small)."""
    job = Job(
        id=job_id,
        model=data.model,
        version=version,
        input_kind="inline",
        input_key=f"jobs/{job_id}/input.npy",
        input_inline=kept,
        input_format="npy",
        input_size=size,
        options=_options(ctx, data.options, features, "npy", "inline") | (source or {}),
        total_rows=total_rows,
    )
    try:
        return _queue(ctx, job)
    except BaseException:
        ctx.storage.delete_prefix(f"jobs/{job_id}")
        raise


def check(ctx: AppContext, data: JobCreate) -> None:
    """Check a submission as ``submit`` does (the model and version exist, the input file exists, is
    within bounds and fits the model) without queueing anything: a schedule is checked so when created."""
    _version, features = _features(ctx, data.model, data.version)
    if data.uri is not None:
        _check_uri(ctx, data, features)
    elif data.rows is not None:
        inputs.inline_array(data.rows[: ctx.settings.max_inline_rows], features)


def _check_uri(ctx: AppContext, data: JobCreate, features: inputs.Features) -> tuple[str, ObjectInfo]:
    """The input file's format and size, once it is known to exist, be within bounds and fit the model."""
    assert data.uri is not None
    fmt = inputs.detect_format(data.uri, data.format)
    info = ctx.storage.stat(data.uri)
    if info.size > ctx.settings.max_batch_file_bytes:
        raise PayloadTooLarge(
            f"{data.uri!r} is {info.size} bytes, over the {ctx.settings.max_batch_file_bytes}-byte limit",
            field="uri",
        )
    local = ctx.storage.local_path(data.uri)
    if local is not None:  # S3 inputs are checked by the job itself, once a worker has fetched them
        inputs.inspect(local, fmt, features)
    return fmt, info


def _submit_uri(
    ctx: AppContext,
    data: JobCreate,
    version: int,
    features: inputs.Features,
    job_id: str,
    source: dict[str, Any],
) -> Job:
    fmt, info = _check_uri(ctx, data, features)
    job = Job(
        id=job_id,
        model=data.model,
        version=version,
        input_kind="uri",
        input_key=data.uri,
        input_format=fmt,
        input_size=info.size,
        options=_options(ctx, data.options, features, fmt, "uri") | source,
    )
    return _queue(ctx, job)


def submit_file(
    ctx: AppContext,
    *,
    model: str,
    version: int | str,
    path: Path,
    filename: str | None,
    declared_format: str | None,
    options: JobOptions,
) -> Job:
    """Submit an uploaded file (already on local disk, under the size cap): checked, then stored."""
    number, features = _features(ctx, model, version)
    fmt = inputs.detect_format(filename, declared_format)
    inputs.inspect(path, fmt, features)
    job_id = new_id()
    key = f"jobs/{job_id}/input.{fmt}"
    info = ctx.storage.put_file(key, path)
    job = Job(
        id=job_id,
        model=model,
        version=number,
        input_kind="upload",
        input_key=key,
        input_format=fmt,
        input_size=info.size,
        options=_options(ctx, options, features, fmt, "upload"),
    )
    try:
        return _queue(ctx, job)
    except BaseException:
        ctx.storage.delete_prefix(f"jobs/{job_id}")
        raise
