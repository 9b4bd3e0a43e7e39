"""Batch prediction routes: ``/api/v1/jobs``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from modelyard.bodies import OffLoopJSONRoute
from modelyard.context import AppContext
from modelyard.deps import Ctx, LastEventId, PredictKey, ReadKey
from modelyard.errors import BadRequest
from modelyard.jobs import inputs, outputs, service, streaming, submission
from modelyard.jobs.events import job_events
from modelyard.jobs.schemas import ChunkList, JobCreate, JobList, JobOptions, JobPublic
from modelyard.jobs.streaming import RowStream
from modelyard.registry import service as registry
from modelyard.serving import offload
from modelyard.serving.service import INLINE_DECODE_BYTES
from modelyard.sse import event_stream
from modelyard.uploads import receive_upload, upload_openapi

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"], route_class=OffLoopJSONRoute)
ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {"description": "Accepted: the job is queued; `Location` is its URL."}
}

UPLOAD_BODY = upload_openapi(
    "CSV, JSONL, Parquet or .npy; named so its suffix tells which",
    {
        "model": {"type": "string", "description": "Model name (or the query parameter)"},
        "version": {"type": "string", "example": "latest"},
        "format": {"type": "string", "enum": ["csv", "jsonl", "parquet", "npy"]},
        "on_error": {"type": "string", "enum": ["fail", "skip"]},
        "output_format": {"type": "string", "enum": ["parquet", "csv", "jsonl"]},
    },
)


def _accepted(response: Response, job_id: str) -> None:
    response.headers["Location"] = f"{service.API}/{job_id}"


def _inlined(schema: Any, defs: dict[str, Any]) -> Any:
    """A JSON schema with its local ``$ref``s replaced by the definitions they name."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inlined(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
        return {k: _inlined(v, defs) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inlined(v, defs) for v in schema]
    return schema


# The body is read raw and parsed in a worker thread (``inputs.read_request``), its rows a window at a time
# as it streams in when big (``jobs.streaming``): a million inline rows parsed whole would stall every other
# request for seconds and take ten times the body's size in memory. So FastAPI does not see the model, and
# its schema is given here.
_JOB_CREATE = JobCreate.model_json_schema()
JOB_CREATE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _inlined(_JOB_CREATE, _JOB_CREATE.pop("$defs", {}))}},
    }
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobPublic,
    responses=ACCEPTED,
    openapi_extra=JOB_CREATE_BODY,
)
async def submit_job(request: Request, ctx: Ctx, _: PredictKey) -> Response:
    """Submit a batch prediction over inline `rows` (as many as the body size limit allows) or a file in
    the artifact store (`uri`). The answer comes at once: `202 Accepted` with the job and its URL in
    `Location`.

    Follow it with `GET /api/v1/jobs/{id}` (progress: rows done, rate, ETA) or the SSE stream
    `/api/v1/jobs/{id}/events`, then download `/api/v1/jobs/{id}/results`.
    """
    head: list[bytes] = []
    size = 0
    chunks = request.stream()
    async for chunk in chunks:
        head.append(chunk)
        size += len(chunk)
        if size > INLINE_DECODE_BYTES:
            break
    else:  # one trip to a worker thread that parses, submits and renders: many small jobs are the hot path
        body_bytes, job_id = await run_in_threadpool(_submit_rendered, ctx, b"".join(head))
        return _accepted_response(body_bytes, job_id)
    # a big body: its rows are read a window at a time as it streams in (``streaming``), in a worker thread
    stream = await run_in_threadpool(RowStream, ctx.settings.data_dir / "tmp")
    try:
        async for chunk in chunks:
            head.append(chunk)
            size += len(chunk)
            if size >= streaming.WINDOW:
                await run_in_threadpool(stream.feed, b"".join(head))
                head, size = [], 0
        await run_in_threadpool(stream.feed, b"".join(head))
        parsed: tuple[JobCreate, Any] | None = await run_in_threadpool(stream.finish)
        if parsed is None:  # not plain rows of numbers, or malformed: parsed whole in a worker process
            parsed = await ctx.inference.decoder.run(offload.decode_job, stream.body)
        body_bytes, job_id = await run_in_threadpool(_submit_rendered, ctx, parsed)
    finally:
        await run_in_threadpool(stream.close)
    return _accepted_response(body_bytes, job_id)


def _accepted_response(body: bytes, job_id: str) -> Response:
    response = Response(body, status_code=status.HTTP_202_ACCEPTED, media_type="application/json")
    _accepted(response, job_id)
    return response


def _submit_rendered(ctx: AppContext, raw: bytes | tuple[JobCreate, Any]) -> tuple[bytes, str]:
    data, rows = inputs.read_request(raw) if isinstance(raw, bytes) else raw
    job = submission.submit(ctx, data, rows=rows)
    return service.job_public(job).model_dump_json().encode(), job.id


@router.post(
    "/upload",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobPublic,
    responses=ACCEPTED,
    openapi_extra=UPLOAD_BODY,
)
async def upload_job(
    request: Request,
    response: Response,
    ctx: Ctx,
    _: PredictKey,
    model: Annotated[str | None, Query(description="Model name (or a form field)")] = None,
    version: Annotated[str | None, Query(description="Version number or `latest`")] = None,
    format: Annotated[
        Literal["csv", "jsonl", "parquet", "npy"] | None,
        Query(description="Input format if the name does not say"),
    ] = None,
    on_error: Annotated[Literal["fail", "skip"] | None, Query()] = None,
    output_format: Annotated[Literal["parquet", "csv", "jsonl"] | None, Query()] = None,
    filename: Annotated[
        str | None, Query(description="File name of a raw body (its suffix tells the format)")
    ] = None,
) -> JobPublic:
    """Submit a batch prediction over an uploaded file: multipart field `file` (other fields as in the
    query), or a raw body with the parameters in the query. CSV (header optional), JSONL, Parquet or
    `.npy`; streamed to disk under the size cap (`413` past it, nothing kept), checked against the model's
    input (columns, dtype; `4xx` naming the problem), stored, and queued: `202 Accepted`.
    """
    if model is not None:
        await run_in_threadpool(_model_exists, ctx, model)
    length = request.headers.get("content-length")
    upload = await receive_upload(
        request.stream(),
        request.headers.get("content-type", "application/octet-stream"),
        max_bytes=ctx.settings.max_batch_file_bytes,
        tmp_dir=ctx.settings.data_dir / "tmp",
        content_length=int(length) if length and length.isdigit() else None,
    )
    try:
        name = model or upload.field("model")
        if not name:
            raise BadRequest("say which model: the `model` query parameter or form field", field="model")
        raw_options = {
            "on_error": on_error or upload.field("on_error") or "fail",
            "output_format": output_format or upload.field("output_format"),
        }
        options = JobOptions.model_validate(raw_options)
        job = await run_in_threadpool(
            lambda: submission.submit_file(
                ctx,
                model=name,
                version=version or upload.field("version") or "latest",
                path=upload.path,
                filename=upload.filename or filename,
                declared_format=format or upload.field("format"),
                options=options,
            )
        )
    finally:
        upload.discard()
    _accepted(response, job.id)
    return service.job_public(job)


def _model_exists(ctx: AppContext, name: str) -> None:
    with ctx.uow() as session:
        registry.get_model(session=session, name=name)


@router.get("", response_model=JobList)
def list_jobs(
    ctx: Ctx,
    _: ReadKey,
    model: Annotated[str | None, Query(description="Only jobs of this model")] = None,
    state: Annotated[list[str] | None, Query(description="Only jobs in these states")] = None,
    created_after: Annotated[datetime | None, Query(examples=["2026-11-24T00:00:00Z"])] = None,
    created_before: Annotated[datetime | None, Query()] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JobList:
    """List jobs, newest first; filter by model, state and creation time; page with offset and limit."""
    with ctx.uow() as session:
        jobs, total = service.list_jobs(
            session=session,
            model=model,
            state=state,
            created_after=created_after,
            created_before=created_before,
            offset=offset,
            limit=limit,
        )
        return JobList(items=[service.job_public(j) for j in jobs], total=total, offset=offset, limit=limit)


@router.get("/{job_id}", response_model=JobPublic)
def get_job(job_id: str, ctx: Ctx, _: ReadKey) -> JobPublic:
    """One job: state, progress (rows done of total, rate, ETA), timings, and the error if it failed."""
    with ctx.uow() as session:
        return service.job_public(service.get_job(session=session, job_id=job_id))


@router.get("/{job_id}/chunks", response_model=ChunkList)
def list_chunks(
    job_id: str,
    ctx: Ctx,
    _: ReadKey,
    state: Annotated[str | None, Query(description="Only chunks in this state, e.g. `failed`")] = None,
) -> ChunkList:
    """The chunks of a job in order: rows, attempts, and for a failed chunk its error, traceback and the
    malformed rows with their numbers."""
    with ctx.uow() as session:
        chunks = service.list_chunks(session=session, job_id=job_id, state=state)
        return ChunkList(items=[service.chunk_public(c) for c in chunks])


@router.get(
    "/{job_id}/results",
    response_class=StreamingResponse,
    responses={200: {"content": {t: {} for t in outputs.MEDIA_TYPES.values()}}},
)
def get_results(
    job_id: str,
    ctx: Ctx,
    _: ReadKey,
    format: Annotated[
        Literal["parquet", "csv", "jsonl"] | None,
        Query(description="Results format; the job's `output_format` if empty"),
    ] = None,
) -> StreamingResponse:
    """Download a succeeded job's results, streamed: one row per input row (skipped rows left out) with
    its `row` number and the model's outputs, in input order. `409` until the job has succeeded."""
    job, tables = service.results(ctx, job_id)
    fmt = format or str(job.options.get("output_format", "parquet"))
    return StreamingResponse(
        outputs.stream(tables, fmt),
        media_type=outputs.MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{job_id}.{fmt}"'},
    )


@router.get("/{job_id}/events", response_class=StreamingResponse)
async def job_event_stream(
    job_id: str, ctx: Ctx, _: ReadKey, last_event_id: LastEventId = None
) -> StreamingResponse:
    """Server-sent events of a job: `queued`, `started`, `progress` (a few a second at most) and a
    final `finished`, each carrying the job as that event reported it; `deleted` if it is deleted. Each
    has the event log id as its `id`: a client reconnecting with `Last-Event-ID` gets the events it
    missed. Comment lines keep the connection alive. Works whichever process runs the job."""
    await run_in_threadpool(_job_exists, ctx, job_id)
    return event_stream(job_events(ctx, job_id, after=last_event_id))


def _job_exists(ctx: AppContext, job_id: str) -> None:
    with ctx.uow() as session:
        service.get_job(session=session, job_id=job_id)


@router.post("/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job_id: str, ctx: Ctx, _: PredictKey) -> JobPublic:
    """Cancel a queued or running job; waiting chunks never run, running ones finish their rows.
    `409` if it already succeeded or failed."""
    return service.job_public(service.cancel(ctx, job_id))


@router.post("/{job_id}/retry", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic)
def retry_job(job_id: str, response: Response, ctx: Ctx, _: PredictKey) -> JobPublic:
    """Run again the chunks of a failed or cancelled job that did not succeed (dead letters included);
    finished chunks are kept."""
    job = service.retry(ctx, job_id)
    _accepted(response, job.id)
    return service.job_public(job)


@router.delete("/{job_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_job(job_id: str, ctx: Ctx, _: PredictKey) -> Response:
    """Delete a job with its stored input and every output (a running job is cancelled first)."""
    service.delete(ctx, job_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
