"""Event log routes: ``/api/v1/log`` (a page of events) and ``/api/v1/log/stream`` (server-sent events);
read scope. The topics and their data are listed in ``modelyard.durable.log``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from modelyard.context import AppContext
from modelyard.deps import Ctx, LastEventId, ReadKey
from modelyard.durable import log
from modelyard.sse import SseEvent, event_stream

router = APIRouter(prefix="/api/v1/log", tags=["events"])
MAX_PAGE = 1000

Topics = Annotated[
    list[str] | None,
    Query(
        alias="topics",
        description="Topic prefixes (repeat, or separate by commas), e.g. `jobs.` or `registry.version.`; "
        "all topics when absent.",
    ),
]
Subject = Annotated[
    str | None, Query(description="Only events about this job id, pipeline event id or model name.")
]


class LogEventPublic(BaseModel):
    """One event of the log."""

    id: int = Field(description="Position in the log: resume after it with `after` or `Last-Event-ID`.")
    topic: str = Field(examples=["jobs.finished"])
    subject: str | None = Field(description="What the event is about: a job id, event id or model name.")
    data: dict[str, Any]
    at: datetime


class LogPage(BaseModel):
    """Events after an id, in order, and the id to ask after next."""

    items: list[LogEventPublic]
    next: int = Field(description="Pass as `after` for the following page (the same when none came).")


def _prefixes(topics: list[str] | None) -> tuple[str, ...]:
    return tuple(p.strip() for t in topics or [] for p in t.split(",") if p.strip())


def _page(ctx: AppContext, after: int, prefixes: tuple[str, ...], subject: str | None, limit: int) -> LogPage:
    follower = log.Follower(ctx, prefixes, subject, after, limit=limit)
    items = [LogEventPublic(**e.public()) for e in follower.poll()]
    return LogPage(items=items, next=follower.position)


@router.get("", response_model=LogPage)
async def read_log(
    ctx: Ctx,
    _: ReadKey,
    after: Annotated[int, Query(ge=0, description="Events with a higher id than this.")] = 0,
    topics: Topics = None,
    subject: Subject = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> LogPage:
    """A page of the event log after an id, oldest first: what every part reported (jobs, pipelines,
    registry), for consumers that poll. Ids may skip numbers; follow `next`, not `id + 1`."""
    return await run_in_threadpool(_page, ctx, after, _prefixes(topics), subject, limit)


async def _events(follower: log.Follower) -> AsyncIterator[SseEvent]:
    async for event in follower.stream():
        yield SseEvent(event.topic, event.public(), id=str(event.id))


@router.get("/stream", responses={200: {"content": {"text/event-stream": {}}, "description": "Event stream"}})
async def stream_log(
    ctx: Ctx,
    _: ReadKey,
    last_event_id: LastEventId = None,
    topics: Topics = None,
    subject: Subject = None,
    after: Annotated[int | None, Query(ge=0, description="Start after this id (else: from now).")] = None,
) -> Response:
    """The event log as server-sent events, from now on (or after `after`, or after the
    `Last-Event-ID` a reconnecting client sends): each named by its topic, with the log id as its `id`
    and the event (id, topic, subject, data, at) as data."""
    start = last_event_id if last_event_id is not None else after
    follower = log.Follower(ctx, _prefixes(topics), subject, start)
    await run_in_threadpool(follower.start)  # "from now" is from this request on
    return event_stream(_events(follower))
