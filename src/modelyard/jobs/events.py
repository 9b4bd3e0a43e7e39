"""A job's events for its SSE stream: the in-process bus wakes the stream at once, and a database read
(every ``poll_seconds`` at the latest) makes it work when the worker is another process too."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from modelyard.errors import JobNotFound
from modelyard.jobs import service
from modelyard.jobs.models import JobState
from modelyard.jobs.schemas import JobPublic
from modelyard.sse import SseEvent

if TYPE_CHECKING:
    from modelyard.context import AppContext


def _read(ctx: AppContext, job_id: str) -> JobPublic:
    with ctx.uow() as session:
        return service.job_public(service.get_job(session=session, job_id=job_id))


def _name(job: JobPublic, seen_running: bool) -> str:
    if JobState(job.state).is_final():
        return "finished"
    if job.state == "queued":
        return "queued"
    return "progress" if seen_running else "started"


async def job_events(ctx: AppContext, job_id: str, *, poll_seconds: float = 0.5) -> AsyncIterator[SseEvent]:
    """``queued``, ``started``, ``progress`` (on every change) and a last ``finished`` event, each with
    the job as data; ``deleted`` if the job disappears meanwhile."""
    changed = asyncio.Event()

    async def listen() -> None:
        async for event in ctx.bus.subscribe("jobs."):
            if event.data.get("job_id") == job_id:
                changed.set()

    listener = asyncio.create_task(listen())
    try:
        last: tuple[object, ...] | None = None
        seen_running = False
        while True:
            changed.clear()
            try:
                job = await run_in_threadpool(_read, ctx, job_id)
            except JobNotFound:
                yield SseEvent("deleted", {"id": job_id})
                return
            p = job.progress
            key = (job.state, p.rows_done, p.rows_failed, p.chunks_done, p.chunks_failed, p.total_rows)
            if key != last:
                name = _name(job, seen_running)
                seen_running = seen_running or job.state == "running"
                yield SseEvent(name, job.model_dump(mode="json"), id=str(p.rows_done + p.rows_failed))
                last = key
            if JobState(job.state).is_final():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), poll_seconds)
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
