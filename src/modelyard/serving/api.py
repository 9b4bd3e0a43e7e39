"""REST prediction routes: ``POST /api/v1/models/{name}[/versions/{v}]/predict``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from modelyard.auth import PredictKey
from modelyard.context import AppContext, Ctx
from modelyard.errors import BadRequest, PayloadTooLarge
from modelyard.serving.rest import decode_inputs, encode_outputs
from modelyard.serving.service import INLINE_DECODE_BYTES, INLINE_ENCODE_ELEMENTS

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
        }
    },
}


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from exc


async def predict_core(
    ctx: AppContext, name: str, version: str, headers: Mapping[str, str], body: bytes
) -> tuple[bytes, str, dict[str, str]]:
    """One REST prediction from raw headers (lower-case names) and body: ``(body, media type, headers)``.

    Shared by the routed endpoint and the ASGI fast path, so both behave the same. Big bodies are
    decoded, and big answers encoded, off the event loop; small ones (the common case) on it, where
    that is cheaper.
    """
    start = time.perf_counter()
    await ctx.verifier.authorize(headers.get("authorization"), headers.get("x-api-key"), "predict")
    cap = min(ctx.settings.max_request_bytes, ctx.settings.max_json_body_bytes)
    if len(body) > cap:
        raise PayloadTooLarge(
            f"request body is over the {cap}-byte limit of JSON predictions "
            "(bigger inputs: V2 binary tensors, or a batch job)"
        )
    if len(body) > INLINE_DECODE_BYTES:
        data = await run_in_threadpool(_loads, body)
        ref = await ctx.inference.resolve(name, version)
        inputs = await run_in_threadpool(decode_inputs, data, ref.signature, ref.metadata)
    else:
        data = _loads(body)
        ref = await ctx.inference.resolve(name, version)
        inputs = decode_inputs(data, ref.signature, ref.metadata)
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
    return (await run_in_threadpool(render) if big else render()), "application/json", {}


async def _predict(ctx: AppContext, request: Request, name: str, version: str) -> Response:
    length = request.headers.get("content-length")
    cap = min(ctx.settings.max_request_bytes, ctx.settings.max_json_body_bytes)
    if length and length.isdigit() and int(length) > cap:
        raise PayloadTooLarge(f"request body of {length} bytes is over the {cap}-byte limit")
    body, media, extra = await predict_core(ctx, name, version, request.headers, await request.body())
    return Response(body, media_type=media, headers=extra)


@router.post("/{name}/predict", openapi_extra=PREDICT_BODY)
async def predict_latest(name: str, request: Request, ctx: Ctx, _: PredictKey) -> Response:
    """Predict with the latest version; small requests are answered synchronously."""
    return await _predict(ctx, request, name, "latest")


@router.post("/{name}/versions/{version}/predict", openapi_extra=PREDICT_BODY)
async def predict_version(name: str, version: str, request: Request, ctx: Ctx, _: PredictKey) -> Response:
    """Predict with one version (a number or `latest`)."""
    return await _predict(ctx, request, name, version)
