"""Deleting a pipeline, or one event: the rows (spec versions, events, stage runs, raw data fetches) and
every object they stored: stage outputs and logs, live or archived, and raw data fetched from URLs. Files
and artifacts an event only read are the client's and stay where they are.

Refused with a 409 while events are pending or running, unless forced: then they are cancelled first, so
a batch running one of their stages finds its runs no longer running and settles nothing.

Rows go first, in one transaction, then the objects: a delete that fails part way leaves stray objects at
worst, never rows naming objects that are gone. A batch that was mid-stage may still write an output after
the objects were removed; the runner removes what it wrote for runs that no longer exist
(``discard_orphans``). No FastAPI, no DBOS.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.orm import Session

from modelyard.context import AppContext
from modelyard.db import Database
from modelyard.errors import Conflict, EventNotFound, PipelineNotFound
from modelyard.pipelines.models import (
    EVENT_TERMINAL,
    Event,
    Pipeline,
    PipelineVersion,
    RawFetch,
    StageRun,
)
from modelyard.pipelines.run import control
from modelyard.pipelines.run.archive import ARCHIVE
from modelyard.pipelines.run.settle import Settled
from modelyard.pipelines.service import get_pipeline
from modelyard.pipelines.spec import RAW
from modelyard.pipelines.stages import outputs


def _live(session: Session, where: ColumnElement[bool]) -> list[str]:
    """Ids of the events matching ``where`` that have not ended."""
    return list(session.scalars(select(Event.id).where(where, Event.state.not_in(list(EVENT_TERMINAL)))))


def _raw_keys(event_ids: Iterable[str]) -> list[str]:
    """Where raw data fetched for these events is kept, live and archived (URLs only; absent is fine)."""
    return [k for eid in event_ids for k in (outputs.raw_key(eid), outputs.archive_key(outputs.raw_key(eid)))]


def _fetched_from_urls(session: Session, event_ids: Sequence[str]) -> list[str]:
    """Those of ``event_ids`` whose raw data was fetched into the artifact store."""
    found: list[str] = []
    for i in range(0, len(event_ids), control.CHUNK):
        found += session.scalars(
            select(RawFetch.event_id).where(
                RawFetch.event_id.in_(event_ids[i : i + control.CHUNK]), RawFetch.kind == "http"
            )
        )
    return found


def delete_pipeline(ctx: AppContext, name: str, *, force: bool = False) -> int:
    """Delete a pipeline, its versions, events, stage runs and stored objects; returns events deleted.

    ``Conflict`` while any of its events is pending or running, unless ``force`` (they are cancelled
    first)."""
    with ctx.uow() as session:
        pipeline_id = get_pipeline(session=session, name=name).id
        live = _live(session, Event.pipeline_id == pipeline_id)
    if live and not force:
        raise pipeline_busy(name, len(live))
    control.cancel_events(ctx, live)
    with ctx.uow() as session:
        _lock_pipeline(session, pipeline_id, name)
        if not force and (live := _live(session, Event.pipeline_id == pipeline_id)):
            raise pipeline_busy(name, len(live))
        event_ids = list(session.scalars(select(Event.id).where(Event.pipeline_id == pipeline_id)))
        fetched = _fetched_from_urls(session, event_ids)
        # every (event, stage) has its row from submission on: a stage without rows stored nothing
        stages = set(
            session.scalars(select(StageRun.stage).where(StageRun.pipeline_id == pipeline_id).distinct())
        )
        events_of = select(Event.id).where(Event.pipeline_id == pipeline_id).scalar_subquery()
        session.execute(delete(StageRun).where(StageRun.pipeline_id == pipeline_id))
        session.execute(delete(RawFetch).where(RawFetch.event_id.in_(events_of)))
        session.execute(delete(Event).where(Event.pipeline_id == pipeline_id))
        session.execute(delete(PipelineVersion).where(PipelineVersion.pipeline_id == pipeline_id))
        session.execute(delete(Pipeline).where(Pipeline.id == pipeline_id))
    for stage in sorted(stages - {RAW}):
        prefix = outputs.stage_prefix(name, stage)
        ctx.storage.delete_prefix(prefix)
        ctx.storage.delete_prefix(outputs.archive_key(prefix))
    _delete_keys(ctx, _raw_keys(fetched))
    for key in [k for k in ctx.specs if k[0] == pipeline_id]:
        ctx.specs.pop(key, None)
    return len(event_ids)


def delete_event(ctx: AppContext, event_id: str, *, force: bool = False) -> None:
    """Delete an event, its stage runs and raw data fetch, and the objects they stored.

    ``Conflict`` while the event is pending or running, unless ``force`` (it is cancelled first)."""
    with ctx.uow() as session:
        live = _live(session, Event.id == event_id)
        if not live and session.get(Event, event_id) is None:
            raise EventNotFound(event_id)
    if live and not force:
        raise event_busy(event_id)
    control.cancel_events(ctx, live)
    with ctx.uow() as session:
        # the event's row first, which settling a batch of it also locks
        if not Database.take(session, Event.state, Event.id == event_id):
            raise EventNotFound(event_id)
        if not force and _live(session, Event.id == event_id):  # re-run meanwhile
            raise event_busy(event_id)
        keys = _stored_keys(session, [event_id])
        keys += _raw_keys(_fetched_from_urls(session, [event_id]))
        session.execute(delete(StageRun).where(StageRun.event_id == event_id))
        session.execute(delete(RawFetch).where(RawFetch.event_id == event_id))
        session.execute(delete(Event).where(Event.id == event_id))
    _delete_keys(ctx, keys)


def discard_orphans(ctx: AppContext, settled: Sequence[Settled]) -> int:
    """Remove what a batch stored for runs deleted while it ran (their event was deleted); returns how
    many objects. Called after settling: a run deleted before this look has its objects removed here, one
    deleted after it has them removed by the delete, which removes rows before objects."""
    if not settled:
        return 0
    wanted = {s.run.event_id for s in settled}
    with ctx.uow() as session:
        alive = {
            (eid, stage)
            for eid, stage in session.execute(
                select(StageRun.event_id, StageRun.stage).where(StageRun.event_id.in_(wanted))
            )
        }
    keys: list[str] = []
    for s in settled:
        if (s.run.event_id, s.run.stage) in alive:
            continue
        if s.run.stage == RAW:  # only data fetched from a URL is ours; files and artifacts are the client's
            keys += _raw_keys([s.run.event_id]) if s.fetched is not None and s.fetched.kind == "http" else []
        else:
            keys += [k for k in (s.values.get("output_key"), s.values.get("logs_key")) if k]
    _delete_keys(ctx, keys)
    return len(keys)


def _stored_keys(session: Session, event_ids: Sequence[str]) -> list[str]:
    """Outputs and logs of these events' stage runs, each where it lives and where archival moves it (an
    archival racing the delete may have moved an object after the delete read its row); raw data is
    handled apart."""
    rows = session.execute(
        select(StageRun.output_key, StageRun.archive_key, StageRun.logs_key).where(
            StageRun.event_id.in_(event_ids), StageRun.stage != RAW
        )
    )
    live = {key.removeprefix(ARCHIVE) for row in rows for key in row if key}
    return sorted(k for key in live for k in (key, outputs.archive_key(key)))


def _lock_pipeline(session: Session, pipeline_id: str, name: str) -> None:
    """Take the pipeline's row for this transaction (``Database.take``), so events submitted to it
    meanwhile wait (their key check) and then fail."""
    if not Database.take(session, Pipeline.name, Pipeline.id == pipeline_id):
        raise PipelineNotFound(name)


def pipeline_busy(name: str, live: int) -> Conflict:
    """The refusal to delete a pipeline while ``live`` of its events are pending or running."""
    events = f"{live} event is" if live == 1 else f"{live} events are"
    return Conflict(
        f"pipeline {name} cannot be deleted: {events} pending or running; wait for them to end, cancel "
        "them, or delete with force=true (cancels them first)",
        extra={"live_events": live},
    )


def event_busy(event_id: str) -> Conflict:
    """The refusal to delete an event while it is pending or running."""
    return Conflict(
        f"event {event_id} cannot be deleted: it is pending or running; wait for it to end, cancel it, "
        "or delete with force=true (cancels it first)",
        extra={"live_events": 1},
    )


def _delete_keys(ctx: AppContext, keys: Iterable[str]) -> None:
    for key in keys:
        ctx.storage.delete(key)  # deleting a missing key is a no-op
