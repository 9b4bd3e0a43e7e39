"""The access log: one JSON line per HTTP request to ``DATA_DIR/logs/access.log`` (rotated).

Each line has the request id (also sent back as ``X-Request-ID``; a client's own ``X-Request-ID`` is
kept when it is short and plain: letters, digits, ``-_.:``), the API key's name, method, route
template, status and duration.
``MODELYARD_ACCESS_LOG=false`` turns it off (the benchmarks do); off, it costs one ``None`` check.
"""

from __future__ import annotations

import logging
import logging.handlers
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID = b"x-request-id"


class KeyNames(Protocol):
    """Names of API keys already verified by this process (no database lookup on the hot path)."""

    def name_of(self, key: str) -> str | None: ...


class AccessLog:
    """Writes access lines to a rotated file, opened at the first line (thread-safe, like any handler)."""

    def __init__(self, log_dir: Path):
        log_dir.mkdir(parents=True, exist_ok=True)
        self.handler = logging.handlers.RotatingFileHandler(
            log_dir / "access.log", maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8", delay=True
        )
        self.handler.setFormatter(logging.Formatter("%(message)s"))

    def write(self, **fields: object) -> None:
        """Append one line."""
        line = orjson.dumps({"ts": datetime.now(UTC).isoformat(), **fields}).decode()
        self.handler.handle(logging.LogRecord("modelyard.access", logging.INFO, "", 0, line, None, None))

    def close(self) -> None:
        """Close the file (a later line opens it again)."""
        self.handler.close()


_ID_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID and 0 < len(value) <= 64 and _ID_CHARS.issuperset(value):
            return str(value.decode("ascii"))
    return uuid.uuid4().hex


def _presented_key(scope: Scope) -> str | None:
    key = None
    for name, value in scope["headers"]:
        if name == b"x-api-key":
            key = str(value.decode("latin-1"))
        elif name == b"authorization":
            kind, _, rest = value.decode("latin-1").partition(" ")
            if kind.lower() == "bearer" and rest:
                return str(rest.strip())
    return key


class AccessLogged:
    """Pure-ASGI wrapper: tags the request with an id, and logs it once the response has started."""

    def __init__(self, app: ASGIApp, log: AccessLog, keys: KeyNames):
        self.app, self.log, self.keys = app, log, keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _request_id(scope)
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            key = _presented_key(scope)
            self.log.write(
                request_id=request_id,
                key=self.keys.name_of(key) if key else None,
                method=scope["method"],
                route=getattr(scope.get("route"), "path", None),
                path=scope["path"],
                status=status,
                duration_ms=round((time.perf_counter() - start) * 1000, 3),
            )
