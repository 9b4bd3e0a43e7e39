"""Running a re-inference (``catalog.versions.switch`` records one): advanced a step at a time by any
worker process (its re-inference thread, ``catalog.runner``, woken by the worker heartbeat).

A step takes the records that still lack the new version. When the producing stage reads the raw data
alone, the step runs it in place (``catalog.inplace``: raw data read once, the stage's own batches, no
pipeline events) and stores the values in one transaction; one call runs such steps one after another for
up to ``PASS_SECONDS``, each next step's records taken (past the last pk taken) while the one before is
still computing, so its first batches are decoding while that one is stored. The worker holds the
re-inference while it computes (``claimed_by``, renewed between batches at most every ``CLAIM_SECONDS``
and given up when older than the heartbeat timeout, so a crashed worker's re-inference resumes elsewhere)
and stores nothing once it was cancelled or taken over. A record the step
could not give values becomes an event of the stage, so it runs, retries and fails where the pipeline's
events and errors show it. Any other stage is run by submitting the records as events of that stage
(only it and what it needs; named from the re-inference, so a repeat submits nothing new). Either way,
records whose content and model are unchanged come from the pipelines' content-hash cache.

Once every record has the new version (and every event of the re-inference is harvested) it either
switches (one transaction, guarded by the state, so two workers cannot both switch) or fails, naming the
records that gave no values. The state row is the only truth: a crashed worker loses nothing, the next
heartbeat carries on.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from sqlalchemy import CursorResult, and_, exists, func, or_, select, update
from sqlalchemy.orm import Session

from modelyard.catalog import inplace, pgvector
from modelyard.catalog.models import Collection, Inference, Record, RecordEvent, Reinference, ReinferenceState
from modelyard.catalog.service import Written
from modelyard.catalog.versions import (
    Producing,
    drop_stale,
    make_current,
    producing_stages,
    records_in_scope,
)
from modelyard.context import AppContext
from modelyard.db import Database, utcnow
from modelyard.pipelines.service import get_pipeline, load_spec
from modelyard.pipelines.spec import PipelineSpec, StageSpec

STEP = 500  # records submitted as events per step
STEP_BATCHES = 8  # batches of the stage per step in place, stored in one transaction
CLAIM_SECONDS = 0.2  # how often a step renews its hold (and sees a cancel) between batches
PASS_SECONDS = 10.0  # steps in place one call runs one after the other (other re-inferences wait)


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
    """One step of every running re-inference; returns how many moved (computed, submitted, or ended)."""
    with ctx.uow() as session:
        running = select(Reinference.id).where(Reinference.state == ReinferenceState.RUNNING)
        ids = list(session.scalars(running))
    return sum(1 for job_id in ids if advance_one(ctx, job_id))


def advance_one(ctx: AppContext, job_id: str, *, compute: bool = True) -> bool:
    """One step of a re-inference (see the module docstring); whether it moved. Without ``compute`` it
    only ends a re-inference that has nothing left to compute."""
    with ctx.uow() as session:
        job = session.get(Reinference, job_id)
        if job is None or ReinferenceState(job.state).is_final():
            return False
        session.expunge(job)
        stages = producing_stages(ctx, session, job.collection_id, job.producer) if job.by_stage else []
    if stages:
        found = _in_place_stage(ctx, stages)
        limit = STEP if found is None else found[2].limits.batch_size * STEP_BATCHES
        with ctx.uow() as session:
            due = _due(session, job, limit if compute else 1)
        if due:
            if not compute:
                return False
            if found is None:
                _submit(ctx, job, stages, [Written(d.pk, "", "unchanged", True) for d in due])
                return True
            if not _step_in_place(ctx, job, stages[0], found, due):
                return False
            with ctx.uow() as session:
                if _due(session, job, 1):
                    return True
            _finish(ctx, job_id)  # the pass took the last records: ended now, not on the next call
            return True
    return _finish(ctx, job_id)


def _finish(ctx: AppContext, job_id: str) -> bool:
    """Switch or fail a re-inference whose records all ran; False while events are still to harvest."""
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
        if not ctx.db.embedded:  # pgvector: the version's spaces copied in and indexed before it is searched
            with ctx.uow() as prep:
                pgvector.prepare(ctx.db, prep, job.collection_id, job.producer, job.version, job.from_version)
        claimed: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(Reinference)
            .where(Reinference.id == job.id, Reinference.state == ReinferenceState.RUNNING)
            .values(state=ReinferenceState.SUCCEEDED, finished_at=utcnow(), claimed_by=None)
        )
        if not claimed.rowcount:
            return True
        make_current(session, job.collection_id, job.producer, job.version)
        switched = (job.collection_id, job.producer)
    drop_stale(ctx, *switched)
    return True


# -- in place ----------------------------------------------------------------------------------------


def _in_place_stage(ctx: AppContext, stages: list[Producing]) -> tuple[str, PipelineSpec, StageSpec] | None:
    """(pipeline id, spec, stage) of the producing stage when it is the only one and runs in place."""
    if len(stages) != 1:
        return None
    with ctx.uow() as session:
        pipeline = get_pipeline(session=session, name=stages[0].pipeline)
        pipeline_id, version = pipeline.id, pipeline.latest_version
    spec = load_spec(ctx, pipeline_id, version)[1]
    stage = spec.stages[stages[0].stage]
    return (pipeline_id, spec, stage) if inplace.runs_in_place(stage) else None


def owner(ctx: AppContext) -> str:
    """Who this process is when it holds a re-inference: its worker's executor id (or host and pid)."""
    if ctx.durable is not None:
        return ctx.durable.executor_id
    return ctx.settings.executor_id or f"{socket.gethostname()}-{os.getpid()}"


def _claim(ctx: AppContext, job_id: str, me: str) -> bool:
    """Hold the re-inference (or renew the hold) unless another worker holds it; whether this one does."""
    now = utcnow()
    cutoff = now - timedelta(seconds=ctx.settings.heartbeat_timeout_seconds)
    with ctx.uow() as session:
        held: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(Reinference)
            .where(
                Reinference.id == job_id,
                Reinference.state == ReinferenceState.RUNNING,
                or_(
                    Reinference.claimed_by.is_(None),
                    Reinference.claimed_by == me,
                    Reinference.claimed_at < cutoff,
                ),
            )
            .values(claimed_by=me, claimed_at=now)
        )
        return bool(held.rowcount)


class _GoingOn:
    """Whether a step may run its next batch: the process is not stopping and still holds the job (the
    hold renewed at most every ``CLAIM_SECONDS``, so a cancel lands within that and a batch)."""

    def __init__(self, ctx: AppContext, job_id: str, me: str):
        self.ctx, self.job_id, self.me = ctx, job_id, me
        self.renewed = time.monotonic()

    def __call__(self) -> bool:
        runner = self.ctx.reinfer.peek()
        if runner is not None and runner.stopping:
            return False
        if time.monotonic() - self.renewed < CLAIM_SECONDS:
            return True
        self.renewed = time.monotonic()
        return _claim(self.ctx, self.job_id, self.me)


def _step_in_place(
    ctx: AppContext,
    job: Reinference,
    producing: Producing,
    found: tuple[str, PipelineSpec, StageSpec],
    due: list[inplace.Due],
) -> bool:
    from modelyard.catalog.binding import producer_of

    pipeline_id, spec, stage = found
    me = owner(ctx)
    if not _claim(ctx, job.id, me):
        return False
    version = producer_of(ctx, stage)[1]
    if version != job.version:
        with ctx.uow() as session:
            total, done = progress(session, job)
            return _fail(
                session, job, total - done, f"stage {stage.name!r} now runs {job.producer} {version}"
            )
    size = len(due)
    deadline = time.monotonic() + PASS_SECONDS

    def steps() -> Iterator[list[inplace.Due]]:
        """This step's records, then the next steps' (after the last pk taken: the steps before may not
        be stored yet) until none is due or the pass has run its time."""
        after = due
        yield after
        while len(after) == size and time.monotonic() < deadline:
            with ctx.uow() as session:
                after = _due(session, job, size, after=after[-1].pk)
            if not after:
                return
            yield after

    pipeline = (pipeline_id, producing.pipeline)
    ran_steps = inplace.run(ctx, pipeline, spec, stage, steps(), keep=_GoingOn(ctx, job.id, me))
    try:
        for ran in ran_steps:
            if not _store(ctx, job, ran.values, me):
                return False
            if ran.failed:
                _submit(ctx, job, [producing], [Written(pk, "", "unchanged", True) for pk in ran.failed])
    finally:
        ran_steps.close()
    return True


def _store(ctx: AppContext, job: Reinference, values: dict[int, Any], me: str) -> bool:
    """Store a step's values in one transaction, while this worker still holds the running re-inference;
    records that have the version by now, or are gone, are left out. Whether it was stored."""
    from modelyard.catalog.binding import store

    with ctx.uow() as session:
        held = Database.take(
            session,
            Reinference.state,
            Reinference.id == job.id,
            Reinference.state == ReinferenceState.RUNNING,
            Reinference.claimed_by == me,
        )
        if not held:
            return False
        pks = list(values)
        alive = set(session.scalars(select(Record.pk).where(Record.pk.in_(pks), ~_has_version(job))))
        items = [(pk, v, None) for pk, v in values.items() if pk in alive]
        if items:
            store(session, job.collection_id, job.producer, job.version, items)
        session.execute(update(Reinference).where(Reinference.id == job.id).values(claimed_at=utcnow()))
    return True


# -- through events ----------------------------------------------------------------------------------


def _suffix(job: Reinference) -> str:
    return f"#{job.producer}@{job.version}~{job.id}"


def _due(session: Session, job: Reinference, limit: int, *, after: int = 0) -> list[inplace.Due]:
    """Records in scope without the new version that this re-inference has not yet submitted (those past
    the pk ``after``)."""
    from modelyard.catalog.binding import event_name

    submitted = exists().where(RecordEvent.record_pk == Record.pk, RecordEvent.reinference_id == job.id)
    name = session.scalar(select(Collection.name).where(Collection.id == job.collection_id)) or ""
    rows = session.execute(
        select(Record.pk, Record.record_id, Record.source, Record.content_hash)
        .where(
            Record.collection_id == job.collection_id,
            Record.source.is_not(None),
            Record.pk > after,
            ~_has_version(job),
            ~submitted,
        )
        .order_by(Record.pk)
        .limit(limit)
    ).all()
    suffix = _suffix(job)
    return [
        inplace.Due(pk, source or "", event_name(name, rid, content or source or "", suffix))
        for pk, rid, source, content in rows
    ]


def _submit(ctx: AppContext, job: Reinference, stages: list[Producing], due: list[Written]) -> None:
    from modelyard.catalog.binding import submit

    for s in stages:
        submit(
            ctx,
            job.collection_id,
            due,
            suffix=_suffix(job),
            pipelines=[s.pipeline],
            stages=[s.stage],
            reinference_id=job.id,
        )


def _fail(session: Session, job: Reinference, missing: int, why: str | None = None) -> bool:
    if why is None:
        first = session.execute(
            select(Record.record_id, RecordEvent.event_id)
            .join(RecordEvent, and_(RecordEvent.record_pk == Record.pk, RecordEvent.reinference_id == job.id))
            .where(~_has_version(job))
            .limit(1)
        ).first()
        where = f" (first: record {first[0]!r}, event {first[1]})" if first is not None else ""
        why = f"{missing} records gave no {job.producer} {job.version}{where}"
    session.execute(
        update(Reinference)
        .where(Reinference.id == job.id, Reinference.state == ReinferenceState.RUNNING)
        .values(
            state=ReinferenceState.FAILED,
            failed=missing,
            finished_at=utcnow(),
            claimed_by=None,
            error=f"{why}; {job.from_version} stays current",
        )
    )
    return True
