"""Events as clients see them: look them up (by id or by name) with every stage run, list a pipeline's
events, and read stage outputs and logs. No FastAPI, no DBOS."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select, tuple_
from sqlalchemy.orm import Session

from modelyard.context import AppContext
from modelyard.errors import Conflict, EventNotFound, InvalidQuery, OutputArchived, StageRunNotFound
from modelyard.paging import decode_cursor, encode_cursor, malformed
from modelyard.pipelines.models import Event, RawFetch, StageRun, StageState
from modelyard.pipelines.schemas import (
    EventList,
    EventPublic,
    EventSummary,
    OutputRef,
    RawPublic,
    StageError,
    StageRunPublic,
)
from modelyard.pipelines.service import API, get_pipeline, load_spec
from modelyard.pipelines.spec import RAW
from modelyard.pipelines.stages import outputs, raw


def find_event(session: Session, event_id: str) -> Event:
    """The event with id ``event_id``."""
    event = session.get(Event, event_id)
    if event is None:
        raise EventNotFound(event_id)
    return event


def event_by_name(ctx: AppContext, pipeline_name: str, event_name: str) -> str:
    """The id of a pipeline's event by the name the client gave it."""
    with ctx.uow() as session:
        pipeline = get_pipeline(session=session, name=pipeline_name)
        eid = session.scalar(
            select(Event.id).where(Event.pipeline_id == pipeline.id, Event.name == event_name)
        )
    if eid is None:
        raise EventNotFound(event_name)
    return eid


def current_stage(runs: Iterable[tuple[str, str]], order: Sequence[str]) -> str | None:
    """The stage an event is at: the first (in DAG order) running, else ready, else failed one."""
    states = dict(runs)
    for wanted in (StageState.RUNNING, StageState.READY, StageState.FAILED, StageState.PENDING):
        for stage in order:
            if states.get(stage) == wanted:
                return stage
    return None


def _ms(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else round((end - start).total_seconds() * 1000, 3)


def run_public(event_id: str, run: StageRun) -> StageRunPublic:
    """The wire form of a stage run."""
    base = f"{API}/events/{event_id}/stages/{run.stage}"
    output = None
    if run.output_kind is not None:
        output = OutputRef(
            kind=run.output_kind,
            key=run.archive_key or run.output_key,
            size=run.size,
            content_hash=run.content_hash,
            archived=run.archive_key is not None,
            url=f"{base}/output",
        )
    error = StageError(type=run.error_type, detail=run.error) if run.error is not None else None
    return StageRunPublic(
        stage=run.stage,
        state=run.state,
        attempts=run.attempts,
        cached=run.cached,
        result=run.result,
        output=output,
        error=error,
        traceback=run.traceback,
        logs_url=f"{base}/logs" if run.logs_key or run.traceback else None,
        ready_at=run.ready_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        duration_ms=run.duration_ms,
    )


def get_event(ctx: AppContext, event_id: str) -> EventPublic:
    """An event with every stage run and its raw data."""
    with ctx.uow() as session:
        event = find_event(session, event_id)
        runs = session.scalars(select(StageRun).where(StageRun.event_id == event_id)).all()
        fetched = session.get(RawFetch, event_id)
    name, spec = load_spec(ctx, event.pipeline_id, event.version)
    order = spec.closure(None)
    runs = sorted(runs, key=lambda r: order.index(r.stage) if r.stage in order else len(order))
    return EventPublic(
        id=event.id,
        name=event.name,
        pipeline=name,
        version=event.version,
        source=event.source,
        state=event.state,
        stage=current_stage(((r.stage, r.state) for r in runs), order),
        params=event.params,
        error=StageError(type=None, detail=event.error) if event.error else None,
        error_stage=event.error_stage,
        runs=event.runs,
        created_at=event.created_at,
        started_at=event.started_at,
        finished_at=event.finished_at,
        latency_ms=_ms(event.created_at, event.finished_at),
        archived_at=event.archived_at,
        raw=RawPublic(
            kind=fetched.kind,
            location=fetched.location,
            size=fetched.size,
            sha256=fetched.sha256,
            content_type=fetched.content_type,
            fetches=fetched.fetches,
        )
        if fetched is not None
        else None,
        stages=[run_public(event.id, r) for r in runs],
    )


def event_cursor(created_at: datetime, event_id: str) -> str:
    """The keyset cursor of an event in a list (newest first): pass it as ``before`` for the events
    older than it, as ``after`` for the newer ones."""
    return encode_cursor({"t": created_at.isoformat(), "id": event_id})


def _position(cursor: str, field: str) -> tuple[datetime, str]:
    state = decode_cursor(cursor, field=field)
    at, eid = state.get("t"), state.get("id")
    try:
        if isinstance(at, str) and isinstance(eid, str):
            when = datetime.fromisoformat(at)
            return (when if when.tzinfo else when.replace(tzinfo=UTC)), eid
    except ValueError:
        pass
    raise InvalidQuery(malformed(field), field=field)


def list_events(
    ctx: AppContext,
    pipeline_name: str,
    *,
    state: str | None = None,
    archived: bool | None = None,
    before: str | None = None,
    after: str | None = None,
    limit: int = 100,
    count: bool = True,
) -> EventList:
    """A page of a pipeline's events, newest first, each with the stage it is at: the newest, or those
    just older than the ``before`` cursor, or just newer than the ``after`` cursor (keyset paging: a seek
    on an index, so a deep page costs what the first does, and events added meanwhile shift nothing).
    ``newer`` and ``older`` are the cursors of the pages on either side (None at an end); ``total``
    counts every matching event (a scan of an index), and is None unless ``count``."""
    if before is not None and after is not None:
        raise InvalidQuery("pass before or after, not both", field="after")
    mark = _position(before, "before") if before is not None else None
    mark = _position(after, "after") if after is not None else mark
    key = tuple_(Event.created_at, Event.id)
    with ctx.uow() as session:
        pipeline = get_pipeline(session=session, name=pipeline_name)
        query = select(Event).where(Event.pipeline_id == pipeline.id)
        if state is not None:
            query = query.where(Event.state == state)
        if archived is not None:
            query = query.where(Event.archived_at.is_not(None) if archived else Event.archived_at.is_(None))
        total = session.scalar(select(func.count()).select_from(query.subquery())) if count else None
        if after is not None:  # read upwards from the cursor, shown newest first
            page = query.where(key > tuple_(*mark)) if mark else query
            events = list(session.scalars(page.order_by(*key_of(asc=True)).limit(limit + 1)))
            newer = len(events) > limit
            events = events[:limit][::-1]
            older = bool(events) and _exists(session, query.where(key < _key(events[-1])))
        else:
            page = query.where(key < tuple_(*mark)) if mark else query
            events = list(session.scalars(page.order_by(*key_of(asc=False)).limit(limit + 1)))
            older = len(events) > limit
            events = events[:limit]
            newer = bool(events) and mark is not None and _exists(session, query.where(key > _key(events[0])))
        runs = _stage_states(session, [e.id for e in events])
    items = []
    for e in events:
        order = load_spec(ctx, e.pipeline_id, e.version)[1].closure(None)
        items.append(
            EventSummary(
                id=e.id,
                name=e.name,
                state=e.state,
                stage=current_stage(runs.get(e.id, []), order),
                error_stage=e.error_stage,
                error=e.error,
                created_at=e.created_at,
                finished_at=e.finished_at,
                archived_at=e.archived_at,
            )
        )
    return EventList(
        items=items,
        total=total,
        newer=event_cursor(events[0].created_at, events[0].id) if events and newer else None,
        older=event_cursor(events[-1].created_at, events[-1].id) if events and older else None,
    )


def key_of(*, asc: bool) -> tuple[ColumnElement[Any], ...]:
    """The order of a list of events on its keyset: (created_at, id), newest first unless ``asc``."""
    if asc:
        return (Event.created_at.asc(), Event.id.asc())
    return (Event.created_at.desc(), Event.id.desc())


def _key(event: Event) -> ColumnElement[Any]:
    return tuple_(event.created_at, event.id)


def _exists(session: Session, query: Select[Any]) -> bool:
    return bool(session.scalar(select(query.exists())))


def _stage_states(session: Session, event_ids: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Each event's (stage, state) pairs."""
    runs: dict[str, list[tuple[str, str]]] = {}
    if event_ids:
        for eid, stage, st in session.execute(
            select(StageRun.event_id, StageRun.stage, StageRun.state).where(StageRun.event_id.in_(event_ids))
        ):
            runs.setdefault(eid, []).append((stage, st))
    return runs


def _run(session: Session, event_id: str, stage: str) -> tuple[Event, StageRun]:
    event = find_event(session, event_id)
    run = session.scalar(select(StageRun).where(StageRun.event_id == event_id, StageRun.stage == stage))
    if run is None:
        raise StageRunNotFound(event_id, stage)
    return event, run


def read_output(ctx: AppContext, event_id: str, stage: str) -> tuple[bytes, str, str]:
    """A stage's output for an event: bytes, media type and a file name."""
    with ctx.uow() as session:
        _, run = _run(session, event_id, stage)
    if run.archive_key is not None:
        raise OutputArchived(
            f"the output of {stage} for event {event_id} is archived at {run.archive_key}; "
            f"restore it with POST {API}/events/{event_id}/restore",
            field="stage",
        )
    if run.output_kind is None or run.output_key is None:
        raise Conflict(
            f"stage {stage} of event {event_id} is {run.state} and has no output yet", field="stage"
        )
    if stage == RAW:
        with ctx.uow() as session:
            fetched = session.get(RawFetch, event_id)
        if fetched is None:
            raise Conflict(f"the raw data of event {event_id} is not fetched yet", field="stage")
        media = fetched.content_type or "application/octet-stream"
        return raw.read(ctx, event_id, fetched.kind, fetched.location), media, f"{event_id}.raw"
    name = run.output_key.rsplit("/", 1)[-1]
    if run.output_kind == "json" and run.result is not None:
        return outputs.encode(run.result, "json").data, outputs.media_type(name), name
    return ctx.storage.get_bytes(run.output_key), outputs.media_type(name), name


def read_logs(ctx: AppContext, event_id: str, stage: str) -> str:
    """What a stage run printed and logged, and its traceback if it failed."""
    with ctx.uow() as session:
        _, run = _run(session, event_id, stage)
    text = ""
    if run.logs_key is not None and ctx.storage.exists(run.logs_key):
        text = ctx.storage.get_bytes(run.logs_key).decode(errors="replace")
    if run.traceback:
        text += ("" if not text or text.endswith("\n") else "\n") + run.traceback
    return text
