"""Archival of stage outputs after a per-pipeline TTL: an ended event's outputs, logs and fetched raw data
move under ``archive/`` (still listable; the rows say where), and come back on request.

Every worker's heartbeat calls ``archive_due``; moves are idempotent (a key already moved is skipped)
and each row is updated only if it is still where this pass found it, so workers racing are harmless.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select, update

from modelyard.context import AppContext
from modelyard.db import utcnow
from modelyard.errors import EventNotFound, NotFound
from modelyard.pipelines.models import EVENT_TERMINAL, Event, Pipeline, RawFetch, StageRun
from modelyard.pipelines.stages.outputs import archive_key
from modelyard.storage import Storage

log = logging.getLogger("modelyard.pipelines")
ARCHIVE = "archive/"


def _move(storage: Storage, src: str, dst: str) -> None:
    """Move ``src`` to ``dst``; already moved (only ``dst`` exists) is fine."""
    try:
        storage.move(src, dst)
    except NotFound:
        if not storage.exists(dst):
            raise


def archive_due(ctx: AppContext, *, limit: int = 100) -> int:
    """Archive up to ``limit`` ended events whose pipeline's TTL has passed; returns how many."""
    now = utcnow()
    with ctx.uow() as session:
        pipelines = session.execute(
            select(Pipeline.id, Pipeline.archive_after_seconds).where(
                Pipeline.archive_after_seconds.is_not(None)
            )
        ).all()
        due: list[str] = []
        for pipeline_id, ttl in pipelines:
            due += session.scalars(
                select(Event.id)
                .where(
                    Event.pipeline_id == pipeline_id,
                    Event.state.in_(list(EVENT_TERMINAL)),
                    Event.archived_at.is_(None),
                    Event.finished_at < now - timedelta(seconds=ttl or 0),
                )
                .limit(limit - len(due))
            ).all()
            if len(due) >= limit:
                break
    for event_id in due:
        try:
            archive_event(ctx, event_id)
        except Exception:
            log.exception("archiving an event failed", extra={"event": event_id})
    return len(due)


def archive_event(ctx: AppContext, event_id: str) -> int:
    """Move an event's outputs, logs and fetched raw data under ``archive/``; returns objects moved."""
    with ctx.uow() as session:
        if session.get(Event, event_id) is None:
            raise EventNotFound(event_id)
        runs = session.execute(
            select(StageRun.id, StageRun.stage, StageRun.output_key, StageRun.logs_key).where(
                StageRun.event_id == event_id, StageRun.archive_key.is_(None), StageRun.stage != "raw"
            )
        ).all()
        fetched = session.get(RawFetch, event_id)
    moved = 0
    for run_id, _stage, key, logs in runs:
        target = archive_key(key) if key else None
        if key and target:
            _move(ctx.storage, key, target)
            moved += 1
        new_logs = None
        if logs and not logs.startswith(ARCHIVE):
            new_logs = archive_key(logs)
            _move(ctx.storage, logs, new_logs)
            moved += 1
        values = {k: v for k, v in (("archive_key", target), ("logs_key", new_logs)) if v is not None}
        if values:
            with ctx.uow() as session:
                session.execute(
                    update(StageRun)
                    .where(StageRun.id == run_id, StageRun.archive_key.is_(None))
                    .values(**values)
                )
    if fetched is not None and fetched.kind == "http" and not fetched.location.startswith(ARCHIVE):
        target = archive_key(fetched.location)
        _move(ctx.storage, fetched.location, target)
        moved += 1
        with ctx.uow() as session:
            session.execute(
                update(RawFetch)
                .where(RawFetch.event_id == event_id, RawFetch.location == fetched.location)
                .values(location=target)
            )
    with ctx.uow() as session:
        session.execute(
            update(Event)
            .where(Event.id == event_id, Event.archived_at.is_(None))
            .values(archived_at=utcnow())
        )
    return moved


def restore_event(ctx: AppContext, event_id: str) -> int:
    """Move an archived event's objects back where they were; returns objects moved."""
    with ctx.uow() as session:
        if session.get(Event, event_id) is None:
            raise EventNotFound(event_id)
        runs = session.execute(
            select(StageRun.id, StageRun.output_key, StageRun.archive_key, StageRun.logs_key).where(
                StageRun.event_id == event_id,
                StageRun.archive_key.is_not(None) | StageRun.logs_key.startswith(ARCHIVE),
            )
        ).all()
        fetched = session.get(RawFetch, event_id)
    moved = 0
    for run_id, key, archived, logs in runs:
        if key and archived:
            _move(ctx.storage, archived, key)
            moved += 1
        values: dict[str, str | None] = {"archive_key": None}
        if logs and logs.startswith(ARCHIVE):
            values["logs_key"] = logs.removeprefix(ARCHIVE)
            _move(ctx.storage, logs, values["logs_key"] or "")
            moved += 1
        with ctx.uow() as session:
            session.execute(update(StageRun).where(StageRun.id == run_id).values(**values))
    if fetched is not None and fetched.location.startswith(ARCHIVE):
        original = fetched.location.removeprefix(ARCHIVE)
        _move(ctx.storage, fetched.location, original)
        moved += 1
        with ctx.uow() as session:
            session.execute(update(RawFetch).where(RawFetch.event_id == event_id).values(location=original))
    with ctx.uow() as session:
        session.execute(update(Event).where(Event.id == event_id).values(archived_at=None))
    return moved
