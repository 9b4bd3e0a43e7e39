"""Pipeline and event routes: ``/api/v1/pipelines`` and ``/api/v1/events``."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from modelyard.bodies import OffLoopJSONRoute
from modelyard.deps import Ctx, ReadKey, WriteKey
from modelyard.errors import (
    PROBLEM_JSON,
    EventNotFound,
    InvalidQuery,
    ModelyardError,
    PayloadTooLarge,
    PipelineNotFound,
)
from modelyard.pipelines import events, service, submission, watch
from modelyard.pipelines.models import EventState
from modelyard.pipelines.run import archive, control, removal
from modelyard.pipelines.schemas import (
    ErrorReport,
    EventBulk,
    EventFolder,
    EventList,
    EventPublic,
    EventsSubmitted,
    EventSubmission,
    PipelineApplied,
    PipelineList,
    PipelinePublic,
    QueueSnapshot,
    RerunRequest,
)
from modelyard.pipelines.spec import load_document
from modelyard.settings import Settings
from modelyard.sse import event_stream

pipelines_router = APIRouter(prefix="/api/v1/pipelines", tags=["pipelines"], route_class=OffLoopJSONRoute)
events_router = APIRouter(prefix="/api/v1/events", tags=["pipelines"], route_class=OffLoopJSONRoute)

SPEC_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {
                "schema": {"type": "object"},
                "example": {
                    "name": "images",
                    "raw": "image",
                    "archive_after": "30d",
                    "stages": {
                        "palette": {"type": "inferrer", "inferrer": "palette", "params": {"top_k": 5}},
                        "hash": {"type": "inferrer", "inferrer": "phash"},
                    },
                },
            },
        },
    }
}
PROBLEM = PROBLEM_JSON


def _delete_responses(what: str, not_found: ModelyardError, busy: ModelyardError) -> dict[int | str, Any]:
    """OpenAPI answers of a delete: 204, and 404 and 409 with example problems made by the real errors."""
    return {
        204: {"description": f"The {what} and everything it stored are deleted"},
        404: {"description": f"No such {what}", "content": {PROBLEM: {"example": not_found.to_problem()}}},
        409: {
            "description": "Events are pending or running and `force` is not set",
            "content": {PROBLEM: {"example": busy.to_problem()}},
        },
    }


DELETE_PIPELINE = _delete_responses(
    "pipeline", PipelineNotFound("images"), removal.pipeline_busy("images", 3)
)
DELETE_EVENT = _delete_responses("event", EventNotFound("0f3c9a"), removal.event_busy("0f3c9a"))
Force = Annotated[
    bool, Query(description="Cancel what is pending or running first, instead of refusing with 409")
]
SSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "Event stream"}
}


async def _document(request: Request, settings: Settings) -> Any:
    limit = settings.pipeline_spec_max_bytes
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the spec is over the {limit}-byte limit")
        chunks.append(chunk)
    return await run_in_threadpool(
        partial(
            load_document,
            b"".join(chunks),
            json="json" in request.headers.get("content-type", ""),
            max_depth=settings.pipeline_spec_max_depth,
            max_nodes=settings.pipeline_spec_max_nodes,
        )
    )


@pipelines_router.post(
    "", response_model=PipelineApplied, openapi_extra=SPEC_BODY, status_code=status.HTTP_201_CREATED
)
async def apply_pipeline(request: Request, response: Response, ctx: Ctx, _: WriteKey) -> PipelineApplied:
    """Create a pipeline, or a new version of it, from a YAML or JSON spec. Every problem (unknown stage
    types, cycles, missing inputs, mismatched types, unknown models) is listed in one 422. Applying the
    latest spec again changes nothing and answers 200."""
    document = await _document(request, ctx.settings)
    applied = await run_in_threadpool(service.apply, ctx, document)
    if not applied.changed:
        response.status_code = status.HTTP_200_OK
    return applied


@pipelines_router.get("", response_model=PipelineList)
def list_pipelines(
    ctx: Ctx,
    _: ReadKey,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> PipelineList:
    """Pipelines with their latest specs."""
    return service.list_pipelines(ctx, offset=offset, limit=limit)


@pipelines_router.get("/{name}", response_model=PipelinePublic)
def get_pipeline(name: str, ctx: Ctx, _: ReadKey) -> PipelinePublic:
    """A pipeline: its stages, their types and limits, and the spec document."""
    return service.describe(ctx, name)


@pipelines_router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, responses=DELETE_PIPELINE)
def delete_pipeline(name: str, ctx: Ctx, _: WriteKey, force: Force = False) -> Response:
    """Delete a pipeline: every version of its spec, its events, their stage runs, and everything they
    stored (outputs and logs, live or archived, and raw data fetched from URLs; files and artifacts the
    events read stay). Refused with `409` while any event is pending or running, unless `force=true`,
    which cancels those events first."""
    removal.delete_pipeline(ctx, name, force=force)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@pipelines_router.post("/{name}/events", response_model=EventsSubmitted, status_code=status.HTTP_202_ACCEPTED)
def submit_events(name: str, body: EventSubmission, ctx: Ctx, _: WriteKey) -> EventsSubmitted:
    """Submit one event, many (`{"events": [...]}`), or one for each file of a data-dir folder
    (`{"folder": "scans", "pattern": "*.tif"}`, named by their paths); each runs the pipeline over its raw
    data. A name already submitted is not run again (it is reported with `created: false`). Every invalid
    event is listed in one 422 and none is stored."""
    if isinstance(body, EventFolder):
        items = submission.folder_events(ctx, body)
    else:
        items = body.events if isinstance(body, EventBulk) else [body]
    got = submission.submit_events(ctx, name, items)
    created = sum(e.created for e in got)
    return EventsSubmitted(created=created, existing=len(got) - created, events=got)


@pipelines_router.get("/{name}/events", response_model=EventList)
def list_events(
    name: str,
    ctx: Ctx,
    _: ReadKey,
    state: Annotated[EventState | None, Query(description="Only events in this state")] = None,
    archived: Annotated[
        bool | None, Query(description="Only archived (true) or unarchived (false) events")
    ] = None,
    before: Annotated[
        str | None, Query(description="The `older` cursor of a page: the page after it")
    ] = None,
    after: Annotated[
        str | None, Query(description="The `newer` cursor of a page: the page before it")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    count: Annotated[bool, Query(description="Count every matching event into `total`")] = True,
    offset: Annotated[int, Query(ge=0, include_in_schema=False)] = 0,
) -> EventList:
    """A pipeline's events, newest first, each with its state and the stage it is at, a page at a time:
    follow the `older` and `newer` cursors (keyset paging: stable while events are added, and as fast
    deep in the list as at its top). A cursor not taken from a page is refused with 400."""
    if offset:  # paging by offset is gone: refused, rather than answered with the first page again
        raise InvalidQuery("events are paged by cursor: pass a page's `older` as `before`", field="offset")
    return events.list_events(
        ctx, name, state=state, archived=archived, before=before, after=after, limit=limit, count=count
    )


@pipelines_router.get("/{name}/events/{event_name}", response_model=EventPublic)
def get_event_by_name(name: str, event_name: str, ctx: Ctx, _: ReadKey) -> EventPublic:
    """An event by the name it was submitted with."""
    return events.get_event(ctx, events.event_by_name(ctx, name, event_name))


@pipelines_router.get("/{name}/queues", response_model=QueueSnapshot)
def queues(name: str, ctx: Ctx, _: ReadKey) -> QueueSnapshot:
    """Queue watcher: per stage, runs pending on inputs, ready (queued), running, done, failed, skipped,
    the oldest ready run's wait and the throughput over the last minute; events per state."""
    return watch.queue_snapshot(ctx, name)


@pipelines_router.get("/{name}/queues/stream", responses=SSE)
def queues_stream(
    name: str, ctx: Ctx, _: ReadKey, interval: Annotated[float, Query(ge=0.2, le=60)] = 1.0
) -> Response:
    """The queue watcher as server-sent `queues` events, sent whenever the snapshot changes."""
    service.describe(ctx, name)
    return event_stream(watch.queue_stream(ctx, name, interval))


@pipelines_router.get("/{name}/errors", response_model=ErrorReport)
def errors(
    name: str,
    ctx: Ctx,
    _: ReadKey,
    stage: Annotated[str | None, Query(description="Only this stage")] = None,
) -> ErrorReport:
    """Stage watcher: failures per stage grouped by error type, with counts and example events."""
    return watch.error_report(ctx, name, stage=stage)


@pipelines_router.get("/{name}/errors/stream", responses=SSE)
def errors_stream(
    name: str,
    ctx: Ctx,
    _: ReadKey,
    stage: str | None = None,
    interval: Annotated[float, Query(ge=0.2, le=60)] = 2.0,
) -> Response:
    """The stage watcher as server-sent `errors` events, sent whenever the report changes."""
    service.describe(ctx, name)
    return event_stream(watch.error_stream(ctx, name, stage, interval))


@events_router.get("/{event_id}", response_model=EventPublic)
def get_event(event_id: str, ctx: Ctx, _: ReadKey) -> EventPublic:
    """An event: its state, the stage it is at, its raw data, and every stage run with its timings,
    output (inline when small) and error."""
    return events.get_event(ctx, event_id)


@events_router.delete("/{event_id}", status_code=status.HTTP_204_NO_CONTENT, responses=DELETE_EVENT)
def delete_event(event_id: str, ctx: Ctx, _: WriteKey, force: Force = False) -> Response:
    """Delete an event, its stage runs and everything they stored (outputs and logs, live or archived,
    and its raw data if fetched from a URL). Refused with `409` while the event is pending or running,
    unless `force=true`, which cancels it first."""
    removal.delete_event(ctx, event_id, force=force)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@events_router.get("/{event_id}/stream", responses=SSE)
def stream_event(event_id: str, ctx: Ctx, _: ReadKey) -> Response:
    """The event as server-sent `event` events whenever it changes; the stream ends with the event."""
    return event_stream(watch.event_stream(ctx, event_id))


@events_router.post("/{event_id}/rerun", response_model=EventPublic, status_code=status.HTTP_202_ACCEPTED)
def rerun(event_id: str, ctx: Ctx, _: WriteKey, body: RerunRequest | None = None) -> EventPublic:
    """Run the event again, or one stage and what depends on it. Unchanged inputs of an unchanged stage
    come from the content-hash cache unless `force`."""
    body = body or RerunRequest()
    return control.rerun(ctx, event_id, stage=body.stage, force=body.force)


@events_router.post("/{event_id}/cancel", response_model=EventPublic)
def cancel(event_id: str, ctx: Ctx, _: WriteKey) -> EventPublic:
    """Cancel the event: stage runs not yet done are skipped."""
    return control.cancel(ctx, event_id)


@events_router.post("/{event_id}/archive", response_model=EventPublic)
def archive_event(event_id: str, ctx: Ctx, _: WriteKey) -> EventPublic:
    """Move the event's outputs under the archive prefix now (the pipeline's TTL does it on its own)."""
    archive.archive_event(ctx, event_id)
    return events.get_event(ctx, event_id)


@events_router.post("/{event_id}/restore", response_model=EventPublic)
def restore_event(event_id: str, ctx: Ctx, _: WriteKey) -> EventPublic:
    """Bring an archived event's outputs back where they were."""
    archive.restore_event(ctx, event_id)
    return events.get_event(ctx, event_id)


@events_router.get(
    "/{event_id}/stages/{stage}/output",
    response_class=Response,
    responses={200: {"content": {"application/json": {}, "application/x-npy": {}, "image/png": {}}}},
)
def stage_output(event_id: str, stage: str, ctx: Ctx, _: ReadKey) -> Response:
    """A stage's output for the event, as stored: JSON, a .npy array, an image or bytes. Readable as soon
    as the stage is done, while later stages still run."""
    data, media, filename = events.read_output(ctx, event_id, stage)
    return Response(data, media_type=media, headers={"Content-Disposition": f'inline; filename="{filename}"'})


@events_router.get("/{event_id}/stages/{stage}/logs", response_class=PlainTextResponse)
def stage_logs(event_id: str, stage: str, ctx: Ctx, _: ReadKey) -> PlainTextResponse:
    """What the stage printed and logged for this event, then its traceback if it failed."""
    return PlainTextResponse(events.read_logs(ctx, event_id, stage))
