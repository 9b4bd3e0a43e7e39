"""Open Inference Protocol V2 routes under ``/v2``, as the spec says (errors are ``{"error": ...}``).

Health, server metadata and model readiness need no key (Triton's endpoint groups put model ready with
health: probes and the stock clients' ``is_model_ready`` send no key); model metadata needs ``read``,
inference ``predict``, and the repository extension's load/unload ``write``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import partial
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from modelyard import __version__
from modelyard.bodies import strict_loads
from modelyard.context import AppContext
from modelyard.deps import Ctx, ReadKey, WriteKey
from modelyard.errors import BadRequest, ModelyardError, NotFound, PayloadTooLarge
from modelyard.registry import service as registry
from modelyard.serving import offload, v2
from modelyard.serving.service import INLINE_DECODE_BYTES, INLINE_ENCODE_ELEMENTS, VersionRef

router = APIRouter(prefix="/v2", tags=["v2 inference protocol"])
JSON = "application/json"
HEADER_LENGTH = v2.HEADER_LENGTH_HEADER.lower()
EXTENSIONS = ["binary_tensor_data", "model_repository", "parameters"]
SECURITY: list[dict[str, list[str]]] = [{"HTTPBearer": []}, {"APIKeyHeader": []}]

INFER_DOC: dict[str, Any] = {
    "security": SECURITY,
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "example": {
                    "id": "42",
                    "inputs": [
                        {"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}
                    ],
                    "outputs": [{"name": "label"}],
                }
            },
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "Binary tensor extension: a JSON header of `Inference-Header-Content-Length` "
                "bytes, then the raw tensors whose `parameters.binary_data_size` the header gives.",
            },
        },
    },
    "responses": {
        "200": {
            "description": "Outputs",
            "content": {
                "application/json": {
                    "example": {
                        "model_name": "iris",
                        "model_version": "1",
                        "id": "42",
                        "outputs": [{"name": "label", "datatype": "INT64", "shape": [1], "data": [0]}],
                    }
                }
            },
        },
        "400": {"description": "Bad inputs", "content": {"application/json": {"example": {"error": "..."}}}},
    },
}


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON)


@router.get("/health/live")
async def live() -> Response:
    """The server is live."""
    return _json({"live": True})


@router.get("/health/ready")
async def ready(ctx: Ctx) -> Response:
    """The server is ready to take inference requests."""
    return _json({"ready": True})


@router.get("")
async def server_metadata() -> Response:
    """Server name, version and the protocol extensions it supports."""
    return _json({"name": "modelyard", "version": __version__, "extensions": EXTENSIONS})


def _metadata(ref: VersionRef, versions: list[int]) -> dict[str, Any]:
    sig = ref.signature
    return v2.model_metadata(
        ref.name,
        versions,
        "onnxruntime_onnx",
        [(t["name"], t["datatype"], t["shape"]) for t in sig["inputs"]],
        [(t["name"], t["datatype"], t["shape"]) for t in sig["outputs"]],
    )


async def _versions(ctx: AppContext, name: str) -> list[int]:
    def load() -> list[int]:
        with ctx.uow() as session:
            return [v.version for v in registry.get_model(session=session, name=name).versions]

    return await run_in_threadpool(load)


@router.get("/models/{name}", openapi_extra={"security": SECURITY})
async def model_metadata(name: str, ctx: Ctx, _: ReadKey) -> Response:
    """Metadata of a model's latest version: inputs and outputs with V2 datatypes (-1 for dynamic dims)."""
    ref = await ctx.inference.resolve(name)
    return _json(_metadata(ref, await _versions(ctx, name)))


@router.get("/models/{name}/versions/{version}", openapi_extra={"security": SECURITY})
async def version_metadata(name: str, version: str, ctx: Ctx, _: ReadKey) -> Response:
    """Metadata of one model version."""
    ref = await ctx.inference.resolve(name, version)
    return _json(_metadata(ref, [ref.version]))


async def _ready(ctx: AppContext, name: str, version: str) -> Response:
    try:
        await ctx.inference.resolve(name, version)
    except NotFound as exc:
        return _json({"error": exc.detail}, 404)
    if ctx.inference.is_unloaded(name):
        return _json({"error": f"model {name!r} is unloaded; load it to serve it again"}, 400)
    return Response(status_code=200)


@router.get("/models/{name}/ready")
async def model_ready(name: str, ctx: Ctx) -> Response:
    """200 when the model has a version that can serve (loaded now or on first use); 400 after an
    unload until it is loaded again, 404 for an unknown model. Needs no key, like health."""
    return await _ready(ctx, name, "latest")


@router.get("/models/{name}/versions/{version}/ready")
async def version_ready(name: str, version: str, ctx: Ctx) -> Response:
    """200 when this version can serve (as the model's ready route says); needs no key."""
    return await _ready(ctx, name, version)


@router.get("/models/{name}/config", openapi_extra={"security": SECURITY})
async def model_config(name: str, ctx: Ctx, _: ReadKey) -> Response:
    """A Triton-style model configuration, for clients that ask for one."""
    ref = await ctx.inference.resolve(name)
    meta = _metadata(ref, [ref.version])
    return _json(
        {
            "name": ref.name,
            "platform": "onnxruntime_onnx",
            "backend": "onnxruntime",
            "max_batch_size": int(ref.metadata.get("max_batch_size", 0) or 0),
            "input": [
                {"name": t["name"], "data_type": "TYPE_" + t["datatype"], "dims": t["shape"]}
                for t in meta["inputs"]
            ],
            "output": [
                {"name": t["name"], "data_type": "TYPE_" + t["datatype"], "dims": t["shape"]}
                for t in meta["outputs"]
            ],
        }
    )


async def infer_core(
    ctx: AppContext, name: str, version: str, headers: Mapping[str, str], body: bytes
) -> tuple[bytes, str, dict[str, str]]:
    """One V2 inference from raw headers (lower-case names) and body: ``(body, media type, headers)``.

    Shared by the routed endpoint and the ASGI fast path, so both behave the same. Big or compressed
    bodies are decoded in a worker process (``offload``), big answers encoded in a thread; small ones (the
    common case) on the event loop, where that is cheaper.
    """
    await ctx.verifier.authorize(headers.get("authorization"), headers.get("x-api-key"), "predict")
    cap = ctx.settings.max_request_bytes
    if len(body) > cap:
        raise PayloadTooLarge(f"request body is over the {cap}-byte limit")
    settings = ctx.settings
    if len(body) > INLINE_DECODE_BYTES or headers.get("content-encoding", "identity") != "identity":
        wanted = {k: v for k, v in headers.items() if k in (HEADER_LENGTH, "content-encoding")}
        limits = offload.V2Limits(
            settings.max_request_bytes, settings.max_json_body_bytes, settings.max_tensor_elements
        )
        req = await ctx.inference.decoder.run(offload.decode_v2, body, wanted, limits)
    else:
        req = v2.decode_body(
            body,
            headers,
            max_request_bytes=settings.max_request_bytes,
            max_json_body_bytes=settings.max_json_body_bytes,
            max_tensor_elements=settings.max_tensor_elements,
        )
    ref = await ctx.inference.resolve(name, version)
    try:
        outputs = await ctx.inference.predict(ref, req.arrays(), "v2")
    except ModelyardError as exc:
        ctx.metrics.prediction_errors.labels(name, exc.code).inc()
        raise
    encode = partial(
        v2.encode_response,
        model_name=ref.name,
        model_version=ref.version,
        request_id=req.id,
        outputs=outputs,
        requested=req.outputs,
        binary_default=req.binary_output_default,
    )
    big = sum(a.size for a in outputs.values()) > INLINE_ENCODE_ELEMENTS
    payload, json_length = await run_in_threadpool(encode) if big else encode()
    if json_length is None:
        return payload, JSON, {}
    return payload, "application/octet-stream", {v2.HEADER_LENGTH_HEADER: str(json_length)}


async def _infer(ctx: AppContext, request: Request, name: str, version: str) -> Response:
    length = request.headers.get("content-length")
    cap = ctx.settings.max_request_bytes
    if length is not None and length.isdigit() and int(length) > cap:
        raise PayloadTooLarge(f"request body of {length} bytes is over the {cap}-byte limit")
    body, media, extra = await infer_core(ctx, name, version, request.headers, await request.body())
    return Response(body, media_type=media, headers=extra)


@router.post("/models/{name}/infer", openapi_extra=INFER_DOC)
async def infer(name: str, request: Request, ctx: Ctx) -> Response:
    """Run inference on the latest version (JSON tensors, or the binary tensor extension)."""
    return await _infer(ctx, request, name, "latest")


@router.post("/models/{name}/versions/{version}/infer", openapi_extra=INFER_DOC)
async def infer_version(name: str, version: str, request: Request, ctx: Ctx) -> Response:
    """Run inference on one version."""
    return await _infer(ctx, request, name, version)


class RepositoryIndexRequest(BaseModel):
    """Filter of the repository index."""

    ready: bool = Field(False, description="Only models that are loaded")


@router.post("/repository/index", openapi_extra={"security": SECURITY})
async def repository_index(ctx: Ctx, _: ReadKey, request: Request) -> Response:
    """Every model version with its state: READY (loaded) or UNAVAILABLE (loads on first use)."""
    raw = await request.body()
    only_ready = False
    if raw.strip():
        big = len(raw) > INLINE_DECODE_BYTES
        data = await run_in_threadpool(strict_loads, raw) if big else strict_loads(raw)
        ready = data.get("ready", False) if isinstance(data, dict) else None
        if not isinstance(ready, bool):
            raise BadRequest('the body is a JSON object like {"ready": true}')
        only_ready = ready
    loaded = set(ctx.inference.cache.keys())

    def load() -> list[dict[str, Any]]:
        with ctx.uow() as session:
            models, _total = registry.list_models(session=session, limit=100_000)
            return [
                {
                    "name": m.name,
                    "version": str(v.version),
                    "state": "READY" if (m.name, v.version) in loaded else "UNAVAILABLE",
                    "reason": "" if (m.name, v.version) in loaded else "not loaded; loads on first use",
                }
                for m in models
                for v in m.versions
            ]

    items = await run_in_threadpool(load)
    return _json([i for i in items if i["state"] == "READY"] if only_ready else items)


@router.post("/repository/models/{name}/load", openapi_extra={"security": SECURITY})
async def repository_load(name: str, ctx: Ctx, _: WriteKey) -> Response:
    """Load the model's latest version now (instead of on first use); it is ready again after an unload."""
    start = time.perf_counter()
    ref = await ctx.inference.resolve(name)
    await ctx.inference.load(ref)
    ctx.inference.mark_loaded(name)
    return _json(
        {"name": name, "version": str(ref.version), "load_ms": round((time.perf_counter() - start) * 1e3, 2)}
    )


@router.post("/repository/models/{name}/unload", openapi_extra={"security": SECURITY})
async def repository_unload(name: str, ctx: Ctx, _: WriteKey) -> Response:
    """Drop the model's loaded sessions. Its ready route answers 400 until it is loaded again (the load
    route, or an inference request, which still loads it on first use)."""
    await ctx.inference.resolve(name)
    ctx.inference.invalidate(name)
    ctx.inference.mark_unloaded(name)
    return _json({"name": name})
