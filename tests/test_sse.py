"""The server-sent events helper: encoding, heartbeats in quiet spells, the end of the stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from modelyard.sse import HEARTBEAT, MEDIA_TYPE, SseEvent, _with_heartbeats, event_stream


def test_event_encoding_has_id_name_and_json_data() -> None:
    assert (
        SseEvent("progress", {"rows": 3}, id="7").encode() == b'id: 7\nevent: progress\ndata: {"rows":3}\n\n'
    )


async def test_quiet_source_gets_heartbeats_and_the_stream_ends_with_it() -> None:
    async def source() -> AsyncIterator[SseEvent]:
        yield SseEvent("queued", {})
        await asyncio.sleep(0.25)
        yield SseEvent("finished", {})

    out = [chunk async for chunk in _with_heartbeats(source(), heartbeat_seconds=0.1)]
    assert out[0].startswith(b"event: queued")
    assert out[-1].startswith(b"event: finished")
    assert HEARTBEAT in out[1:-1]


async def test_closing_the_stream_closes_the_source() -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[SseEvent]:
        try:
            while True:
                yield SseEvent("tick", {})
                await asyncio.sleep(0.01)
        finally:
            closed.set()

    stream = _with_heartbeats(endless(), heartbeat_seconds=1)
    assert (await anext(stream)).startswith(b"event: tick")
    await stream.aclose()  # what Starlette does when the client goes away
    await asyncio.wait_for(closed.wait(), 1)


def test_response_is_an_uncached_event_stream() -> None:
    async def empty() -> AsyncIterator[SseEvent]:
        return
        yield

    resp = event_stream(empty())
    assert resp.media_type == MEDIA_TYPE
    assert resp.headers["cache-control"] == "no-cache"
