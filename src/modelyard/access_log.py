"""The access log: one JSON line per HTTP request to ``DATA_DIR/logs/access.log`` (rotated).

Each line has the request id (also sent back as ``X-Request-ID``; a client's own ``X-Request-ID`` is
kept when it is short and plain: letters, digits, ``-_.:``), the API key's name, method, route
template, status and duration.
``MODELYARD_ACCESS_LOG=false`` turns it off (the benchmarks do); off, it costs one ``None`` check.

A request only appends its fields to a bounded queue; a background thread formats and writes what waits
in batches, and the rest at shutdown. When the disk cannot keep up and the queue is full, lines are
dropped, never waited for: counted (``dropped``, ``modelyard_access_log_dropped_total``) and said in the log.
"""

from __future__ import annotations

import logging
import logging.handlers
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID = b"x-request-id"
QUEUE_LINES = 65_536  # lines waiting for the writer; past it a line is dropped (and counted)
FLUSH_SECONDS = 0.25  # the writer writes what waits at least this often
BATCH_LINES = 1024  # lines per write (and per rotation check)


class KeyNames(Protocol):
    """Names of API keys already verified by this process (no database lookup on the hot path)."""

    def name_of(self, key: str) -> str | None: ...


class AccessLog:
    """Queues access lines and writes them from a background thread to a rotated file (opened at the first
    line; the thread starts then too, and again after ``close``)."""

    def __init__(
        self,
        log_dir: Path,
        *,
        capacity: int = QUEUE_LINES,
        flush_seconds: float = FLUSH_SECONDS,
        on_drop: Callable[[int], None] | None = None,
    ):
        log_dir.mkdir(parents=True, exist_ok=True)
        self.handler = logging.handlers.RotatingFileHandler(
            log_dir / "access.log", maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8", delay=True
        )
        self.handler.setFormatter(logging.Formatter("%(message)s"))
        self.capacity, self.flush_seconds, self.on_drop = capacity, flush_seconds, on_drop
        self.dropped = 0  # lines dropped since the start: only request handlers add to it
        self._told = 0  # of them, those the log already says were dropped (the writer's count)
        self._pending: deque[tuple[float, dict[str, Any]]] = deque()
        self._wake = threading.Event()
        self._stop = False
        self._writer: threading.Thread | None = None
        self._lifecycle = threading.Lock()

    def write(self, **fields: object) -> None:
        """Queue one line (dropped and counted when the queue is full): no formatting, no I/O here."""
        pending = self._pending
        if len(pending) >= self.capacity:
            self.dropped += 1
            return
        pending.append((time.time(), fields))
        if self._writer is None:
            self._start()
        elif len(pending) == self.capacity // 2:
            self._wake.set()  # falling behind: write now rather than at the next tick

    def close(self) -> None:
        """Write every queued line, stop the writer and close the file (a later line starts them again)."""
        with self._lifecycle:
            writer, self._writer = self._writer, None
            if writer is not None:
                self._stop = True
                self._wake.set()
                writer.join()
                self._stop = False
            self._flush()
            self.handler.close()

    def _start(self) -> None:
        with self._lifecycle:
            if self._writer is None:
                self._writer = threading.Thread(target=self._run, name="access-log", daemon=True)
                self._writer.start()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self._flush()

    def _flush(self) -> None:
        pending = self._pending
        while pending:
            batch = [pending.popleft() for _ in range(min(len(pending), BATCH_LINES))]
            self._emit([_line(ts, fields) for ts, fields in batch])
        dropped = self.dropped - self._told
        if dropped:
            self._told += dropped
            note = {"ts": datetime.now(UTC).isoformat(), "dropped": dropped, "dropped_total": self._told}
            self._emit([orjson.dumps(note).decode()])
            if self.on_drop is not None:
                self.on_drop(dropped)

    def _emit(self, lines: list[str]) -> None:
        record = logging.LogRecord("modelyard.access", logging.INFO, "", 0, "\n".join(lines), None, None)
        self.handler.handle(record)


def _line(ts: float, fields: dict[str, Any]) -> str:
    return orjson.dumps({"ts": datetime.fromtimestamp(ts, UTC).isoformat(), **fields}).decode()


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
