"""Submitting jobs: resolve the model version, check the input, store it, record the job, enqueue it.

Nothing is left behind by a refused submission: the input is checked before it is stored, and a job
whose enqueue fails is failed (not left queued) while its stored input is removed.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import update
from sqlalchemy.orm import Session

from modelyard.db import new_id
from modelyard.durable import dispatcher
from modelyard.errors import InvalidInput, PayloadTooLarge, Unavailable
from modelyard.jobs import inputs
from modelyard.jobs.models import Job, JobState
from modelyard.jobs.outputs import OUTPUT_FORMATS
from modelyard.jobs.schemas import JobCreate, JobOptions
from modelyard.jobs.service import JOB_QUEUE, JOB_WORKFLOW, job_workflow_id, publish
from modelyard.registry import service as registry
from modelyard.serving.rest import rows_to_array

if TYPE_CHECKING:
    from modelyard.context import AppContext


def _features(session: Session, model: str, version: int | str) -> tuple[int, inputs.Features]:
    found, v = registry.resolve_version(session=session, name=model, version=version)
    return v.version, inputs.Features.from_signature(v.signature, {**found.meta, **v.meta})


def _inline_array(rows: list[Any], features: inputs.Features) -> np.ndarray:
    """Inline rows (lists, or objects keyed by the model's columns) as one array in the model's dtype."""
    arr = rows_to_array(rows, {"inputs": [{"datatype": "FP64"}]}, {"columns": features.columns})
    if features.width is not None and arr.shape[1] != features.width:
        raise InvalidInput(
            f"rows have {arr.shape[1]} values, the model expects {features.width}", field="rows"
        )
    return arr.astype(features.dtype)


def _options(ctx: AppContext, options: JobOptions, fmt: str, kind: str) -> dict[str, Any]:
    default = fmt if fmt in OUTPUT_FORMATS else ("jsonl" if kind == "inline" else "parquet")
    return {
        "on_error": options.on_error,
        "output_format": options.output_format or default,
        "chunk_rows": options.chunk_rows or ctx.settings.job_chunk_rows,
        "max_attempts": ctx.settings.job_max_attempts,
        "retry_seconds": ctx.settings.job_retry_seconds,
    }


def _queue(ctx: AppContext, job: Job) -> Job:
    """Record a new job and enqueue its workflow; if the enqueue fails the job is failed, not lost."""
    with ctx.uow() as session:
        session.add(job)
        session.flush()
    try:
        dispatcher(ctx).enqueue(JOB_WORKFLOW, JOB_QUEUE, job_workflow_id(job.id), job.id)
    except Exception as exc:
        with ctx.uow() as session:
            session.execute(
                update(Job)
                .where(Job.id == job.id)
                .values(state=JobState.FAILED, error_code="unavailable", error=f"not queued: {exc}")
            )
        raise Unavailable(f"the job could not be queued: {exc}") from exc
    publish(ctx, "jobs.queued", job)
    return job


def submit(
    ctx: AppContext, data: JobCreate, *, job_id: str | None = None, source: dict[str, Any] | None = None
) -> Job:
    """Submit inline rows (stored as .npy) or a file already in the artifact store (``uri``).

    With ``job_id`` the submission is idempotent: a job of that id that exists already is returned.
    ``source`` (e.g. the schedule and slot that started it) is kept in the job's options.
    """
    with ctx.uow() as session:
        if job_id is not None and (existing := session.get(Job, job_id)) is not None:
            return existing
        version, features = _features(session, data.model, data.version)
    if data.uri is not None:
        return _submit_uri(ctx, data, version, features, job_id or new_id(), source or {})
    rows = data.rows or []
    if len(rows) > ctx.settings.max_inline_rows:
        raise PayloadTooLarge(
            f"{len(rows)} inline rows is over the limit of {ctx.settings.max_inline_rows}; upload a file",
            field="rows",
        )
    arr = _inline_array(rows, features)
    job_id = job_id or new_id()
    key = f"jobs/{job_id}/input.npy"
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    info = ctx.storage.put_bytes(key, buf.getvalue())
    job = Job(
        id=job_id,
        model=data.model,
        version=version,
        input_kind="inline",
        input_key=key,
        input_format="npy",
        input_size=info.size,
        options=_options(ctx, data.options, "npy", "inline") | (source or {}),
        total_rows=len(rows),
    )
    try:
        return _queue(ctx, job)
    except BaseException:
        ctx.storage.delete_prefix(f"jobs/{job_id}")
        raise


def _submit_uri(
    ctx: AppContext,
    data: JobCreate,
    version: int,
    features: inputs.Features,
    job_id: str,
    source: dict[str, Any],
) -> Job:
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
    job = Job(
        id=job_id,
        model=data.model,
        version=version,
        input_kind="uri",
        input_key=data.uri,
        input_format=fmt,
        input_size=info.size,
        options=_options(ctx, data.options, fmt, "uri") | source,
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
    with ctx.uow() as session:
        number, features = _features(session, model, version)
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
        options=_options(ctx, options, fmt, "upload"),
    )
    try:
        return _queue(ctx, job)
    except BaseException:
        ctx.storage.delete_prefix(f"jobs/{job_id}")
        raise
