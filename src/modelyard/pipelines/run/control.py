"""Acting on events: run one again (all of it, or one stage and what depends on it) or cancel it.
No FastAPI, no DBOS."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from modelyard.context import AppContext
from modelyard.db import utcnow
from modelyard.durable import log
from modelyard.errors import Conflict, StageRunNotFound
from modelyard.pipelines.events import find_event, get_event
from modelyard.pipelines.models import (
    EVENT_TERMINAL,
    STAGE_TERMINAL,
    Event,
    EventState,
    StageRun,
    StageState,
)
from modelyard.pipelines.run import archive
from modelyard.pipelines.run.settle import event_done
from modelyard.pipelines.schemas import EventPublic
from modelyard.pipelines.service import load_spec, wake
from modelyard.pipelines.spec import RAW

CHUNK = 500  # event ids per IN (...)


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
    with ctx.uow() as session:
        event = find_event(session, event_id)
        if EventState(event.state).is_final():
            raise Conflict(f"event {event_id} is already {event.state}", field="id")
        _skip_unfinished(session, [event_id], utcnow())
    return get_event(ctx, event_id)


def cancel_events(ctx: AppContext, event_ids: Sequence[str]) -> None:
    """Cancel those of ``event_ids`` not yet ended, in one transaction (ended ones stay as they are)."""
    if not event_ids:
        return
    with ctx.uow() as session:
        _skip_unfinished(session, event_ids, utcnow())


def _skip_unfinished(session: Session, event_ids: Sequence[str], now: datetime) -> None:
    """Skip the events' runs not yet done and mark the events not yet ended cancelled; a batch still
    running one of those runs then finds it no longer running and leaves it skipped."""
    for i in range(0, len(event_ids), CHUNK):
        chunk = list(event_ids[i : i + CHUNK])
        session.execute(
            update(StageRun)
            .where(StageRun.event_id.in_(chunk), StageRun.state.not_in(list(STAGE_TERMINAL)))
            .values(
                state=StageState.SKIPPED,
                error="cancelled",
                error_type="Cancelled",
                finished_at=now,
                batch_id=None,
            )
        )
        cancelled = session.execute(
            update(Event)
            .where(Event.id.in_(chunk), Event.state.not_in(list(EVENT_TERMINAL)))
            .values(state=EventState.CANCELLED, finished_at=now)
            .returning(Event.id, Event.pipeline_id)
        ).all()
        log.append_many(session, [event_done(eid, pid, EventState.CANCELLED) for eid, pid in cancelled])
