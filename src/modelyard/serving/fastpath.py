"""An ASGI fast path for the hottest routes: V2 ``infer`` and REST ``predict``.

It answers them before FastAPI's router, dependency solving and response classes run, calling the
same ``infer_core`` / ``predict_core`` as the routed endpoints (which stay for the OpenAPI docs and
for anything the fast path passes on). Auth, caps, metrics and error bodies are the same.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard.context import AppContext
from modelyard.errors import ModelyardError, PayloadTooLarge, problem
from modelyard.serving.api import predict_core
from modelyard.serving.v2_api import infer_core

log = logging.getLogger("modelyard.serving")
INFER_PATH = re.compile(r"^/v2/models/([^/\x00]+)(?:/versions/([^/\x00]+))?/infer$")
# The only request headers the hot routes read (decoding every header costs more than the model run).
WANTED = {
    name.encode(): name
    for name in (
        "authorization",
        "x-api-key",
        "content-length",
        "content-encoding",
        "inference-header-content-length",
        "prefer",
    )
}
FAST_PREFIXES = ("/v2/models/", "/api/v1/models/")
# a name holding a NUL character matches no fast route: the framework's stack answers it (400)
PREDICT_PATH = re.compile(r"^/api/v1/models/([^/\x00]+)(?:/versions/([^/\x00]+))?/predict$")
Core = Callable[
    [AppContext, str, str, Mapping[str, str], bytes], Awaitable[tuple[int, bytes, str, dict[str, str]]]
]


async def _infer(
    ctx: AppContext, name: str, version: str, headers: Mapping[str, str], body: bytes
) -> tuple[int, bytes, str, dict[str, str]]:
    return (200, *await infer_core(ctx, name, version, headers, body))


@dataclass(frozen=True, slots=True)
class _RouteName:
    path: str


# (pattern, core, route templates without and with a version, whether errors use the V2 body)
ROUTES: list[tuple[re.Pattern[str], Core, _RouteName, _RouteName, bool]] = [
    (
        INFER_PATH,
        _infer,
        _RouteName("/v2/models/{name}/infer"),
        _RouteName("/v2/models/{name}/versions/{version}/infer"),
        True,
    ),
    (
        PREDICT_PATH,
        predict_core,
        _RouteName("/api/v1/models/{name}/predict"),
        _RouteName("/api/v1/models/{name}/versions/{version}/predict"),
        False,
    ),
]


def _match(path: str) -> tuple[re.Match[str], Core, _RouteName, _RouteName, bool] | None:
    for pattern, core, route, route_version, v2_errors in ROUTES:
        match = pattern.match(path)
        if match is not None:
            return match, core, route, route_version, v2_errors
    return None


class InferFastPath:
    """Serves V2 infer requests directly; everything else goes to the wrapped app."""

    def __init__(self, app: ASGIApp, ctx: AppContext):
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        found = _match(path)
        if found is None:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        match, core, route, route_version, v2_errors = found
        name, version = match.group(1), match.group(2) or "latest"
        scope["route"] = route_version if match.group(2) else route
        headers = {WANTED[k.lower()]: v.decode("latin-1") for k, v in scope["headers"] if k.lower() in WANTED}
        extra: dict[str, str] = {}
        try:
            body = await self._read(receive, headers, v2_errors)
            status, payload, media, extra = await core(self.ctx, name, version, headers, body)
        except Exception as exc:
            if not isinstance(exc, ModelyardError):
                log.exception("prediction failed", extra={"model": name, "path": path})
            answer = problem(exc, path, v2=v2_errors)
            status, payload, media, extra = answer.status, answer.encode(), answer.media_type, answer.headers
        raw = [(b"content-type", media.encode()), (b"content-length", str(len(payload)).encode())]
        raw += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": payload})
        template = route_version.path if match.group(2) else route.path
        self.ctx.metrics.record_request(template, "POST", status, time.perf_counter() - start)

    async def _read(self, receive: Receive, headers: dict[str, str], binary: bool) -> bytes:
        settings = self.ctx.settings  # V2 bodies may carry binary tensors; REST bodies are JSON only
        cap = (
            settings.max_request_bytes
            if binary
            else min(settings.max_request_bytes, settings.max_json_body_bytes)
        )
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > cap:
            raise PayloadTooLarge(f"request body of {length} bytes is over the {cap}-byte limit")
        chunks: list[bytes] = []
        size = 0
        while True:
            message: Message = await receive()
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > cap:
                    raise PayloadTooLarge(f"request body is over the {cap}-byte limit")
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
