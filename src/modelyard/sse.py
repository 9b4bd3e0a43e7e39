"""Server-sent events: any async stream of ``SseEvent`` as a ``text/event-stream`` response.

A client that reconnects sends the last id it got as ``Last-Event-ID`` (the ``LastEventId`` route
parameter); streams whose ids are event log ids resume after it.

A comment line goes out whenever the source has been quiet for ``heartbeat_seconds`` (so proxies keep
the connection and clients notice a dead server); the response ends when the source ends, and the
source is closed when the client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import StreamingResponse

MEDIA_TYPE = "text/event-stream"
HEARTBEAT = b": keep-alive\n\n"
_END = object()


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One event: its name, JSON-able data, and an optional id."""

    event: str
    data: Any
    id: str | None = None

    def encode(self) -> bytes:
        """The event in the wire format."""
        head = f"id: {self.id}\n" if self.id is not None else ""
        return f"{head}event: {self.event}\ndata: ".encode() + orjson.dumps(self.data) + b"\n\n"


async def _with_heartbeats(source: AsyncIterator[SseEvent], heartbeat_seconds: float) -> AsyncIterator[bytes]:
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=100)

    async def pump() -> None:
        try:
            async for item in source:
                await queue.put(item)
        finally:
            await queue.put(_END)

    task = asyncio.create_task(pump())
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), heartbeat_seconds)
            except TimeoutError:
                yield HEARTBEAT
                continue
            if item is _END:
                break
            assert isinstance(item, SseEvent)
            yield item.encode()
        await task  # re-raise what stopped the source, if anything
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def event_stream(source: AsyncIterator[SseEvent], *, heartbeat_seconds: float = 15.0) -> StreamingResponse:
    """A streaming response sending ``source``'s events, with heartbeat comments in quiet spells."""
    return StreamingResponse(
        _with_heartbeats(source, heartbeat_seconds),
        media_type=MEDIA_TYPE,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
