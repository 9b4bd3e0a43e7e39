"""WebSocket streaming predictions: ``/api/v1/models/{name}/stream``.

A client keeps sending ``{"id": "r1", "rows": [...]}`` or ``{"id": "r1", "inputs": {...}}`` (optionally
``"version": 2``) and gets ``{"id": "r1", "model", "version", "outputs"}`` for each as soon as it is ready,
possibly out of order. A bad message gets ``{"id": "r1", "error": {problem}}`` and the socket stays open.
Authentication failures close the socket with the code from ``CLOSE_CODES``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from modelyard.context import AppContext
from modelyard.errors import BadRequest, ModelyardError, PayloadTooLarge, problem
from modelyard.serving.rest import decode_inputs, encode_outputs
from modelyard.serving.service import INLINE_DECODE_BYTES, INLINE_ENCODE_ELEMENTS

router = APIRouter(prefix="/api/v1/models", tags=["serving"])
log = logging.getLogger("modelyard.ws")

# Domain error status -> WebSocket close code (4000-4999 are free for applications).
CLOSE_CODES = {401: 4401, 403: 4403, 404: 4404}
MAX_IN_FLIGHT = 64


def _loads(raw: str | bytes) -> dict[str, Any]:
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"message is not valid JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise BadRequest("message must be a JSON object")
    return message


async def _answer(ctx: AppContext, name: str, raw: str | bytes) -> dict[str, Any]:
    request_id: Any = None
    try:
        cap = ctx.settings.max_json_body_bytes
        if len(raw) > cap:
            raise PayloadTooLarge(f"message is over the {cap}-byte limit of JSON")
        big = len(raw) > INLINE_DECODE_BYTES  # big messages are decoded off the event loop
        message = await run_in_threadpool(_loads, raw) if big else _loads(raw)
        request_id = message.get("id")
        ref = await ctx.inference.resolve(name, message.get("version", "latest"))
        body = {k: v for k, v in message.items() if k in ("rows", "inputs")}
        decode = partial(decode_inputs, body, ref.signature, ref.metadata)
        outputs = await ctx.inference.predict(
            ref, await run_in_threadpool(decode) if big else decode(), "websocket"
        )
        encode = partial(encode_outputs, outputs)
        many = sum(a.size for a in outputs.values()) > INLINE_ENCODE_ELEMENTS
        return {
            "id": request_id,
            "model": ref.name,
            "version": ref.version,
            "outputs": await run_in_threadpool(encode) if many else encode(),
        }
    except ModelyardError as exc:
        ctx.metrics.prediction_errors.labels(name, exc.code).inc()
        return {"id": request_id, "error": problem(exc).body}
    except Exception as exc:
        log.exception("websocket prediction failed", extra={"model": name})
        return {"id": request_id, "error": problem(exc).body}


@router.websocket("/{name}/stream")
async def stream(websocket: WebSocket, name: str) -> None:
    """Stream predictions over one socket; the key goes in the headers or `?api_key=`."""
    ctx: AppContext = websocket.app.state.ctx
    try:
        await ctx.verifier.authorize(
            websocket.headers.get("authorization"),
            websocket.headers.get("x-api-key") or websocket.query_params.get("api_key"),
            "predict",
        )
    except ModelyardError as exc:
        await websocket.close(code=CLOSE_CODES.get(exc.status, 1008), reason=exc.detail[:120])
        return
    await websocket.accept()
    send_lock = asyncio.Lock()
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    tasks: set[asyncio.Task[None]] = set()

    async def handle(raw: str | bytes) -> None:
        try:
            reply = await _answer(ctx, name, raw)
            async with send_lock:
                await websocket.send_bytes(orjson.dumps(reply)) if isinstance(
                    raw, bytes
                ) else await websocket.send_text(orjson.dumps(reply).decode())
        finally:
            slots.release()

    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            raw = message.get("text") if message.get("text") is not None else message.get("bytes")
            if raw is None:
                continue
            await slots.acquire()
            task = asyncio.create_task(handle(raw))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    except WebSocketDisconnect:
        pass
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
