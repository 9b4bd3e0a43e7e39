"""Running a re-inference (``catalog.versions.switch`` starts one): advanced on every worker heartbeat,
from any worker process, a step at a time. A step submits the records that still lack the new version as
events of the producing stage (only that stage and what it needs; named from the re-inference, so a repeat
submits nothing new and records whose content and model are unchanged come from the pipelines' content-hash
cache); once every record's event is harvested it either switches (one transaction, guarded by the state,
so two workers cannot both switch) or fails, naming the records that gave no values. The state row is the
only truth: a crashed worker loses nothing, the next heartbeat carries on.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import CursorResult, and_, exists, func, select, update
from sqlalchemy.orm import Session

from modelyard.catalog.models import Inference, Record, RecordEvent, Reinference, ReinferenceState
from modelyard.catalog.service import Written
from modelyard.catalog.versions import drop_stale, make_current, producing_stages, records_in_scope
from modelyard.context import AppContext
from modelyard.db import utcnow

STEP = 500  # records submitted per step


def _has_version(job: Reinference) -> Any:
    return exists().where(
        Inference.record_pk == Record.pk,
        Inference.producer == job.producer,
        Inference.version == job.version,
    )


def progress(session: Session, job: Reinference) -> tuple[int, int]:
    """(records in scope, records that have the new version)."""
    scope = records_in_scope(job)
    base = select(func.count()).select_from(Record).where(Record.collection_id == job.collection_id, scope)
    total = session.scalar(base) or 0
    done = session.scalar(base.where(_has_version(job))) or 0
    return total, done


def advance(ctx: AppContext) -> int:
    """One step of every running re-inference; returns how many are still running."""
    with ctx.uow() as session:
        running = select(Reinference.id).where(Reinference.state == ReinferenceState.RUNNING)
        ids = list(session.scalars(running))
    return sum(1 for job_id in ids if not advance_one(ctx, job_id))


def advance_one(ctx: AppContext, job_id: str) -> bool:
    """One step of a re-inference (see the module docstring); True once it has stopped."""
    with ctx.uow() as session:
        job = session.get(Reinference, job_id)
        if job is None or ReinferenceState(job.state).is_final():
            return True
        stages = producing_stages(ctx, session, job.collection_id, job.producer) if job.by_stage else []
        due = _due(session, job) if stages else []
    if stages and due:
        _submit(ctx, job, stages, due)
        return False
    with ctx.uow() as session:
        job = session.get(Reinference, job_id)
        assert job is not None
        waiting = session.scalar(
            select(func.count()).where(RecordEvent.reinference_id == job.id, RecordEvent.harvested.is_(False))
        )
        if waiting:
            return False
        total, done = progress(session, job)
        if done < total:
            return _fail(session, job, total - done)
        claimed: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(Reinference)
            .where(Reinference.id == job.id, Reinference.state == ReinferenceState.RUNNING)
            .values(state=ReinferenceState.SUCCEEDED, finished_at=utcnow())
        )
        if not claimed.rowcount:
            return True
        make_current(session, job.collection_id, job.producer, job.version)
        switched = (job.collection_id, job.producer)
    drop_stale(ctx, *switched)
    return True


def _due(session: Session, job: Reinference) -> list[Written]:
    """Records in scope without the new version that this re-inference has not yet submitted."""
    submitted = exists().where(RecordEvent.record_pk == Record.pk, RecordEvent.reinference_id == job.id)
    rows = session.execute(
        select(Record.pk, Record.record_id)
        .where(
            Record.collection_id == job.collection_id,
            Record.source.is_not(None),
            ~_has_version(job),
            ~submitted,
        )
        .order_by(Record.pk)
        .limit(STEP)
    ).all()
    return [Written(pk, rid, "unchanged", True) for pk, rid in rows]


def _submit(ctx: AppContext, job: Reinference, stages: list[Any], due: list[Written]) -> None:
    from modelyard.catalog.binding import submit

    for s in stages:
        submit(
            ctx,
            job.collection_id,
            due,
            suffix=f"#{job.producer}@{job.version}~{job.id}",
            pipelines=[s.pipeline],
            stages=[s.stage],
            reinference_id=job.id,
        )


def _fail(session: Session, job: Reinference, missing: int) -> bool:
    first = session.execute(
        select(Record.record_id, RecordEvent.event_id)
        .join(RecordEvent, and_(RecordEvent.record_pk == Record.pk, RecordEvent.reinference_id == job.id))
        .where(~_has_version(job))
        .limit(1)
    ).first()
    where = f" (first: record {first[0]!r}, event {first[1]})" if first is not None else ""
    session.execute(
        update(Reinference)
        .where(Reinference.id == job.id, Reinference.state == ReinferenceState.RUNNING)
        .values(
            state=ReinferenceState.FAILED,
            failed=missing,
            finished_at=utcnow(),
            error=f"{missing} records gave no {job.producer} {job.version}{where}; "
            f"{job.from_version} stays current",
        )
    )
    return True
