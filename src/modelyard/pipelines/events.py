"""Events: submit them (bulk, idempotent by name), look them up with every stage run, re-run or cancel them,
and read stage outputs and logs. No FastAPI, no DBOS."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelyard.context import AppContext
from modelyard.db import new_id, utcnow
from modelyard.errors import (
    BadRequest,
    Conflict,
    EventNotFound,
    OutputArchived,
    StageRunNotFound,
    ValidationFailed,
)
from modelyard.pipelines import archive, outputs, raw
from modelyard.pipelines.models import (
    STAGE_TERMINAL,
    Event,
    EventState,
    RawFetch,
    StageRun,
    StageState,
)
from modelyard.pipelines.schemas import (
    EventCreate,
    EventList,
    EventPublic,
    EventSubmitted,
    EventSummary,
    OutputRef,
    RawPublic,
    StageError,
    StageRunPublic,
)
from modelyard.pipelines.service import API, get_pipeline, load_spec, wake
from modelyard.pipelines.sources import parse_source
from modelyard.pipelines.spec import RAW, PipelineSpec

CHUNK = 500  # names per IN (...) lookup


def _check_events(ctx: AppContext, spec: PipelineSpec, events: Sequence[EventCreate]) -> list[list[str]]:
    """The stages each event needs; ``ValidationFailed`` listing every bad event (nothing is stored)."""
    problems: list[dict[str, Any]] = []
    limit = ctx.settings.pipeline_max_events_per_request
    if len(events) > limit:
        raise ValidationFailed(
            f"{len(events)} events in one request; the limit is {limit}",
            errors=[{"field": "events", "detail": "too many events in one request"}],
            field="events",
        )
    closures: list[list[str]] = []
    data_dir = ctx.settings.data_dir
    for i, event in enumerate(events):
        try:
            parse_source(event.source, data_dir=data_dir)
        except BadRequest as exc:
            problems.append({"field": f"events[{i}].source", "detail": exc.detail, "name": event.name})
        unknown = [s for s in event.stages or [] if s not in spec.stages and s != RAW]
        if unknown:
            problems.append(
                {
                    "field": f"events[{i}].stages",
                    "detail": f"unknown stages {unknown} (known: {list(spec.stages)})",
                    "name": event.name,
                }
            )
            closures.append([])
        else:
            closures.append(spec.closure(event.stages))
    if problems:
        raise ValidationFailed(
            f"{len(problems)} of {len(events)} events are invalid (none was stored): "
            f"{problems[0]['field']}: {problems[0]['detail']}",
            errors=problems,
        )
    return closures


def _existing(session: Session, pipeline_id: str, names: Sequence[str]) -> dict[str, tuple[str, str]]:
    found: dict[str, tuple[str, str]] = {}
    for i in range(0, len(names), CHUNK):
        rows = session.execute(
            select(Event.name, Event.id, Event.state).where(
                Event.pipeline_id == pipeline_id, Event.name.in_(names[i : i + CHUNK])
            )
        ).all()
        found.update({name: (eid, state) for name, eid, state in rows})
    return found


def submit_events(ctx: AppContext, pipeline_name: str, events: Sequence[EventCreate]) -> list[EventSubmitted]:
    """Store new events (each with its stage runs, raw fetch first) and report existing ones as they are."""
    with ctx.uow() as session:
        pipeline = get_pipeline(session=session, name=pipeline_name)
    pipeline_id, version = pipeline.id, pipeline.latest_version
    spec = load_spec(ctx, pipeline_id, version)[1]
    closures = _check_events(ctx, spec, events)
    for attempt in range(3):
        try:
            result = _insert_events(ctx, pipeline_id, version, events, closures)
            break
        except IntegrityError:  # another request stored some of these names meanwhile: look again
            if attempt == 2:
                raise
    wake(ctx)
    return result


def _insert_events(
    ctx: AppContext, pipeline_id: str, version: int, events: Sequence[EventCreate], closures: list[list[str]]
) -> list[EventSubmitted]:
    now = utcnow()
    out: list[EventSubmitted] = []
    new_events: list[dict[str, Any]] = []
    new_runs: list[dict[str, Any]] = []
    with ctx.uow() as session:
        existing = _existing(session, pipeline_id, list(dict.fromkeys(e.name for e in events)))
        for event, stages in zip(events, closures, strict=True):
            if event.name in existing:
                eid, state = existing[event.name]
                out.append(EventSubmitted(id=eid, name=event.name, created=False, state=state))
                continue
            eid = new_id()
            existing[event.name] = (eid, EventState.PENDING)
            new_events.append(
                {
                    "id": eid,
                    "pipeline_id": pipeline_id,
                    "version": version,
                    "name": event.name,
                    "source": event.source,
                    "stages": stages,
                    "params": event.params,
                    "state": EventState.PENDING,
                    "runs": 1,
                    "created_at": now,
                }
            )
            for stage in stages:
                ready = stage == RAW
                new_runs.append(
                    {
                        "event_id": eid,
                        "pipeline_id": pipeline_id,
                        "stage": stage,
                        "state": StageState.READY if ready else StageState.PENDING,
                        "ready_at": now if ready else None,
                        "attempts": 0,
                        "writes": 0,
                        "cached": False,
                        "force": False,
                    }
                )
            out.append(EventSubmitted(id=eid, name=event.name, created=True, state=EventState.PENDING))
        if new_events:
            session.execute(insert(Event), new_events)
            session.execute(insert(StageRun), new_runs)
    return out


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


def list_events(
    ctx: AppContext,
    pipeline_name: str,
    *,
    state: str | None = None,
    archived: bool | None = None,
    offset: int = 0,
    limit: int = 100,
) -> EventList:
    """A pipeline's events, newest first, each with the stage it is at."""
    with ctx.uow() as session:
        pipeline = get_pipeline(session=session, name=pipeline_name)
        query = select(Event).where(Event.pipeline_id == pipeline.id)
        if state is not None:
            query = query.where(Event.state == state)
        if archived is not None:
            query = query.where(Event.archived_at.is_not(None) if archived else Event.archived_at.is_(None))
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        events = session.scalars(
            query.order_by(Event.created_at.desc(), Event.id).offset(offset).limit(limit)
        ).all()
        runs: dict[str, list[tuple[str, str]]] = {}
        if events:
            for eid, stage, st in session.execute(
                select(StageRun.event_id, StageRun.stage, StageRun.state).where(
                    StageRun.event_id.in_([e.id for e in events])
                )
            ):
                runs.setdefault(eid, []).append((stage, st))
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
    return EventList(items=items, total=total)


def rerun(ctx: AppContext, event_id: str, *, stage: str | None = None, force: bool = False) -> EventPublic:
    """Run an event again (every stage, or ``stage`` and what depends on it); ready runs start at once."""
    with ctx.uow() as session:
        archived = find_event(session, event_id).archived_at is not None
    if archived:  # outputs back first: the cache and the logs live there
        archive.restore_event(ctx, event_id)
    now = utcnow()
    with ctx.uow() as session:
        event = find_event(session, event_id)
        spec = load_spec(ctx, event.pipeline_id, event.version)[1]
        if stage is not None and stage not in spec.stages and stage != RAW:
            raise StageRunNotFound(event_id, stage)
        wanted = spec.closure([*event.stages, *([stage] if stage else [])])
        reset = set(wanted if stage is None else spec.downstream(stage)) & set(wanted)
        have = set(session.scalars(select(StageRun.stage).where(StageRun.event_id == event_id)))
        missing = [s for s in wanted if s not in have]
        if missing:
            session.execute(
                insert(StageRun),
                [
                    {
                        "event_id": event_id,
                        "pipeline_id": event.pipeline_id,
                        "stage": s,
                        "state": StageState.PENDING,
                        "attempts": 0,
                        "writes": 0,
                        "cached": False,
                        "force": force,
                    }
                    for s in missing
                ],
            )
        session.execute(
            update(StageRun)
            .where(StageRun.event_id == event_id, StageRun.stage.in_(reset))
            .values(
                state=StageState.PENDING,
                batch_id=None,
                attempts=0,
                error=None,
                error_type=None,
                traceback=None,
                ready_at=None,
                claimed_at=None,
                started_at=None,
                finished_at=None,
                cached=False,
                # forcing re-runs the named stage (or all); what depends on it may still hit the cache
                force=StageRun.stage.in_(reset if stage is None else [stage]) & force,
            )
        )
        states = dict(
            session.execute(select(StageRun.stage, StageRun.state).where(StageRun.event_id == event_id)).all()
        )
        ready = [
            s
            for s in wanted
            if states[s] == StageState.PENDING
            and all(states.get(i) == StageState.DONE for i in spec.inputs_of(s))
        ]
        session.execute(
            update(StageRun)
            .where(
                StageRun.event_id == event_id, StageRun.stage.in_(ready), StageRun.state == StageState.PENDING
            )
            .values(state=StageState.READY, ready_at=now)
        )
        event.stages, event.state, event.runs = wanted, EventState.RUNNING, event.runs + 1
        event.error, event.error_stage, event.finished_at = None, None, None
    wake(ctx)
    return get_event(ctx, event_id)


def cancel(ctx: AppContext, event_id: str) -> EventPublic:
    """Cancel an event: runs not yet done are skipped (a batch running one of them leaves it skipped)."""
    now = utcnow()
    with ctx.uow() as session:
        event = find_event(session, event_id)
        if EventState(event.state).is_final():
            raise Conflict(f"event {event_id} is already {event.state}", field="id")
        session.execute(
            update(StageRun)
            .where(StageRun.event_id == event_id, StageRun.state.not_in(list(STAGE_TERMINAL)))
            .values(
                state=StageState.SKIPPED,
                error="cancelled",
                error_type="Cancelled",
                finished_at=now,
                batch_id=None,
            )
        )
        event.state, event.finished_at = EventState.CANCELLED, now
    return get_event(ctx, event_id)


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
