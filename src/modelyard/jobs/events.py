"""A job's events for its SSE stream, read from the event log (so a worker in another process is seen as
soon as its transaction commits; this process's bus only wakes the stream sooner).

Each SSE message's id is the event log id, so a client reconnecting with ``Last-Event-ID`` gets exactly
the events it missed, in order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from modelyard.durable import log
from modelyard.errors import JobNotFound
from modelyard.jobs import service
from modelyard.jobs.models import JobState
from modelyard.jobs.schemas import JobPublic
from modelyard.sse import SseEvent

if TYPE_CHECKING:
    from modelyard.context import AppContext

NAMES = {
    "jobs.queued": "queued",
    "jobs.started": "started",
    "jobs.progress": "progress",
    "jobs.finished": "finished",
    "jobs.deleted": "deleted",
}
COUNTS = ("rows_done", "rows_failed", "total_rows", "chunks_done", "chunk_count")


def _read(ctx: AppContext, job_id: str) -> JobPublic:
    with ctx.uow() as session:
        return service.job_public(service.get_job(session=session, job_id=job_id))


def _name(job: JobPublic) -> str:
    if JobState(job.state).is_final():
        return "finished"
    if job.state == "queued":
        return "queued"
    return "progress" if job.progress.rows_done + job.progress.rows_failed else "started"


def as_reported(job: JobPublic, data: dict[str, Any]) -> dict[str, Any]:
    """The job as an event reported it: its state and counts from the event, the rest as it is now."""
    out = job.model_dump(mode="json")
    out["state"] = data["state"]
    progress = out["progress"]
    for name in COUNTS:
        progress[name] = data[name]
    total, handled = data["total_rows"], data["rows_done"] + data["rows_failed"]
    progress["fraction"] = min(handled / total, 1.0) if total else progress["fraction"]
    return out


async def job_events(ctx: AppContext, job_id: str, *, after: int | None = None) -> AsyncIterator[SseEvent]:
    """``queued``, ``started``, ``progress`` and a last ``finished`` event, each with the job as data;
    ``deleted`` if the job is deleted meanwhile. Without ``after`` the stream starts with the job as it
    is now; with it, it sends the job's events logged after that id."""
    follower = log.Follower(ctx, ("jobs.",), job_id, after)
    position = await run_in_threadpool(follower.start)  # before the job is read: nothing falls between
    if after is None:
        try:
            job = await run_in_threadpool(_read, ctx, job_id)
        except JobNotFound:
            yield SseEvent("deleted", {"id": job_id})
            return
        yield SseEvent(_name(job), job.model_dump(mode="json"), id=str(position))
        if JobState(job.state).is_final():
            return
    stream = follower.stream()
    try:
        async for event in stream:
            name = NAMES.get(event.topic, event.topic.removeprefix("jobs."))
            try:
                if name == "deleted":
                    raise JobNotFound(job_id)
                job = await run_in_threadpool(_read, ctx, job_id)
            except JobNotFound:
                yield SseEvent("deleted", {"id": job_id}, id=str(event.id))
                return
            yield SseEvent(name, as_reported(job, event.data), id=str(event.id))
            if name == "finished":
                return
    finally:
        await stream.aclose()
