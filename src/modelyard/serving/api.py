"""REST prediction routes: ``POST /api/v1/models/{name}[/versions/{v}]/predict``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from modelyard.context import AppContext
from modelyard.deps import Ctx, PredictKey
from modelyard.errors import PayloadTooLarge
from modelyard.jobs import service as jobs
from modelyard.jobs import submission
from modelyard.jobs.schemas import JobCreate, JobOptions
from modelyard.serving import offload
from modelyard.serving.rest import decode_inputs, encode_outputs
from modelyard.serving.service import INLINE_DECODE_BYTES, INLINE_ENCODE_ELEMENTS, VersionRef

router = APIRouter(prefix="/api/v1/models", tags=["serving"])

PREDICT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "inputs": {"type": "object", "description": "Input name to (nested) array"},
                        "rows": {
                            "type": "array",
                            "description": "Tabular rows: lists, or objects keyed by column",
                        },
                    },
                },
                "examples": {
                    "rows": {"summary": "Tabular rows", "value": {"rows": [[5.1, 3.5, 1.4, 0.2]]}},
                    "inputs": {
                        "summary": "Named inputs",
                        "value": {"inputs": {"input": [[5.1, 3.5, 1.4, 0.2]]}},
                    },
                },
            }
        },
    },
    "responses": {
        "200": {
            "description": "Outputs by name",
            "content": {
                "application/json": {
                    "example": {"model": "iris", "version": 1, "outputs": {"label": [0]}, "elapsed_ms": 0.4}
                }
            },
        },
        "202": {"description": "Accepted: a big prediction became a batch job; `Location` is its URL."},
    },
}


# Smallest JSON a row can take ("[1],"): a body shorter than threshold x this cannot hold more rows than
# the threshold, so small predictions are never counted.
MIN_ROW_BYTES = 4


def _submit_job(
    ctx: AppContext, ref: VersionRef, rows: np.ndarray, preferred: bool
) -> tuple[int, bytes, str, dict[str, str]]:
    """The prediction as a batch job, through the same submission as ``POST /api/v1/jobs``: 202 (saying
    the client's ``Prefer: respond-async`` was applied, if it sent one)."""
    request = JobCreate.model_construct(
        model=ref.name, version=ref.version, rows=None, uri=None, format=None, options=JobOptions()
    )
    job = submission.submit(ctx, request, rows=rows)
    body = jobs.job_public(job).model_dump_json().encode()
    headers = {"Location": f"{jobs.API}/{job.id}"}
    if preferred:
        headers["Preference-Applied"] = "respond-async"
    return 202, body, "application/json", headers


async def predict_core(
    ctx: AppContext, name: str, version: str, headers: Mapping[str, str], body: bytes
) -> tuple[int, bytes, str, dict[str, str]]:
    """One REST prediction from raw headers (lower-case names) and body: ``(status, body, media type,
    headers)``. Over ``predict_async_rows`` rows, or with ``Prefer: respond-async``, it becomes a batch job
    and answers 202 with the job; a small body is never counted (no extra work on the hot path).

    Shared by the routed endpoint and the ASGI fast path, so both behave the same. Big bodies are
    decoded in a worker process (``offload``), big answers encoded in a thread; small ones (the common
    case) on the event loop, where that is cheaper.
    """
    start = time.perf_counter()
    await ctx.verifier.authorize(headers.get("authorization"), headers.get("x-api-key"), "predict")
    cap = min(ctx.settings.max_request_bytes, ctx.settings.max_json_body_bytes)
    if len(body) > cap:
        raise PayloadTooLarge(
            f"request body is over the {cap}-byte limit of JSON predictions "
            "(bigger inputs: V2 binary tensors, or a batch job)"
        )
    prefer = headers.get("prefer")
    wants_job = prefer is not None and "respond-async" in prefer.lower()
    threshold = ctx.settings.predict_async_rows
    over = 0 if wants_job else threshold if threshold and len(body) > threshold * MIN_ROW_BYTES else None
    if over is None and len(body) <= INLINE_DECODE_BYTES:  # the common case, on the event loop
        data = offload.loads(body)
        ref = await ctx.inference.resolve(name, version)
        inputs = decode_inputs(data, ref.signature, ref.metadata)
    else:  # a big body in a worker process, where parsing it holds up no one (``offload``)
        ref = await ctx.inference.resolve(name, version)
        job = (ref.signature, ref.metadata, over)
        if len(body) > INLINE_DECODE_BYTES:
            decoded = await ctx.inference.decoder.run(offload.decode_rest, body, *job)
        else:
            decoded = await run_in_threadpool(offload.decode_rest, body, *job)
        if decoded.rows is not None:
            return await run_in_threadpool(_submit_job, ctx, ref, decoded.rows, wants_job)
        assert decoded.inputs is not None
        inputs = decoded.inputs
    outputs = await ctx.inference.predict(ref, inputs, "rest")

    def render() -> bytes:
        payload = {
            "model": ref.name,
            "version": ref.version,
            "outputs": encode_outputs(outputs),
            "elapsed_ms": round((time.perf_counter() - start) * 1000, 3),
        }
        return orjson.dumps(payload)

    big = sum(a.size for a in outputs.values()) > INLINE_ENCODE_ELEMENTS
    return 200, (await run_in_threadpool(render) if big else render()), "application/json", {}


async def _predict(ctx: AppContext, request: Request, name: str, version: str) -> Response:
    length = request.headers.get("content-length")
    cap = min(ctx.settings.max_request_bytes, ctx.settings.max_json_body_bytes)
    if length and length.isdigit() and int(length) > cap:
        raise PayloadTooLarge(f"request body of {length} bytes is over the {cap}-byte limit")
    status, body, media, extra = await predict_core(ctx, name, version, request.headers, await request.body())
    return Response(body, status_code=status, media_type=media, headers=extra)


@router.post("/{name}/predict", openapi_extra=PREDICT_BODY)
async def predict_latest(name: str, request: Request, ctx: Ctx, _: PredictKey) -> Response:
    """Predict with the latest version. Up to `MODELYARD_PREDICT_ASYNC_ROWS` rows are answered at once
    (200); more, or `Prefer: respond-async`, become a batch job: `202 Accepted` with the job, its URL in
    `Location`."""
    return await _predict(ctx, request, name, "latest")


@router.post("/{name}/versions/{version}/predict", openapi_extra=PREDICT_BODY)
async def predict_version(name: str, version: str, request: Request, ctx: Ctx, _: PredictKey) -> Response:
    """Predict with one version (a number or `latest`); big predictions become a job (202) as above."""
    return await _predict(ctx, request, name, version)
