"""The ``current`` version of each producer in a collection, and switching it.

A producer's current version is one row (``ProducerVersion``): the first version stored becomes it; after
that only an explicit switch changes it. ``switch`` records a re-inference (``catalog.reinfer``): every
record runs again through the bound pipeline stage that produces it, on the workers, and only when the
whole collection has the new version does one transaction move the alias (and the ``current`` marks of the
inferences). Search reads the alias once per query and pins every part of the query to it, so a query
never mixes two versions, in any process. ``rollback`` moves the alias back to the previous version (its
inferences were kept). No FastAPI, no DBOS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from modelyard.catalog.models import (
    Collection,
    Inference,
    ProducerVersion,
    Record,
    RecordEvent,
    Reinference,
    ReinferenceState,
)
from modelyard.catalog.schemas import (
    ProducerVersionPublic,
    ReinferencePublic,
    VersionList,
    VersionSwitch,
)
from modelyard.context import AppContext
from modelyard.db import insert_new, utcnow
from modelyard.errors import Conflict, NotFound
from modelyard.pipelines.run import control
from modelyard.pipelines.service import get_pipeline, load_spec
from modelyard.pipelines.spec import StageSpec
from modelyard.pipelines.spec.kinds import stage_kind


def alias(session: Session, collection_id: str, producer: str, version: str) -> str:
    """The producer's current version in the collection; ``version`` becomes it if it has none yet."""
    insert_new(
        session,
        ProducerVersion.__table__,
        [{"collection_id": collection_id, "producer": producer, "current": version, "switched_at": utcnow()}],
    )
    found = session.scalar(
        select(ProducerVersion.current).where(
            ProducerVersion.collection_id == collection_id, ProducerVersion.producer == producer
        )
    )
    return found if found is not None else version


def current_versions(session: Session, collection_id: str) -> dict[str, str]:
    """Every producer's current version in the collection (one read: a query pins itself to it)."""
    return dict(
        session.execute(
            select(ProducerVersion.producer, ProducerVersion.current).where(
                ProducerVersion.collection_id == collection_id
            )
        ).all()
    )


@dataclass(frozen=True, slots=True)
class Producing:
    """A bound pipeline stage whose output is a producer's values, and the version it would run now."""

    pipeline: str
    stage: str
    version: str
    model: bool  # the producer is a registered model (else an inferrer or a stage)


def producing_stages(ctx: AppContext, session: Session, collection_id: str, producer: str) -> list[Producing]:
    """The stages of the collection's bound pipelines that produce ``producer``."""
    from modelyard.catalog.binding import producer_of
    from modelyard.catalog.service import bound_pipelines

    found = []
    for name in bound_pipelines(session, collection_id):
        pipeline = get_pipeline(session=session, name=name)
        spec = load_spec(ctx, pipeline.id, pipeline.latest_version)[1]
        for stage in spec.stages.values():
            if _names(stage) != producer:
                continue
            version = producer_of(ctx, stage)[1]
            model = stage_kind(stage.kind).uses(stage).model is not None
            found.append(Producing(name, stage.name, version, model))
    return found


def _names(stage: StageSpec) -> str:
    model = stage_kind(stage.kind).uses(stage).model
    return str(model[0]) if model is not None else str(stage.config.get("inferrer") or stage.name)


def _has_version(session: Session, collection_id: str, producer: str, version: str) -> bool:
    return bool(
        session.scalar(
            select(
                exists().where(
                    Inference.collection_id == collection_id,
                    Inference.producer == producer,
                    Inference.version == version,
                )
            )
        )
    )


def _check_switch(
    ctx: AppContext, session: Session, coll: Collection, data: VersionSwitch
) -> tuple[str | None, bool]:
    """The producer's current version and whether a stage produces it, once the switch is known to be
    possible (else the 4xx why)."""
    stages = producing_stages(ctx, session, coll.id, data.producer)
    current = session.scalar(
        select(ProducerVersion.current).where(
            ProducerVersion.collection_id == coll.id, ProducerVersion.producer == data.producer
        )
    )
    if not stages and current is None:
        raise NotFound(
            f"no bound pipeline stage produces {data.producer!r} and the collection has no values of it",
            field="producer",
        )
    if current == data.version:
        raise Conflict(f"{data.producer} {data.version} is already current", field="version")
    if any(s.model for s in stages):
        ctx.inference.resolve_sync(data.producer, data.version)  # 404 for a version never registered
    for s in stages:
        if s.version != data.version:
            raise Conflict(
                f"stage {s.stage!r} of pipeline {s.pipeline!r} runs {data.producer} {s.version}, not "
                f"{data.version}: set the stage's version to {data.version} (or re-register) first",
                field="version",
            )
    if not stages and not _has_version(session, coll.id, data.producer, data.version):
        raise NotFound(
            f"no bound pipeline stage produces {data.producer!r} and the collection has no values of "
            f"version {data.version}",
            field="version",
        )
    running = session.scalar(
        select(Reinference.id).where(
            Reinference.collection_id == coll.id,
            Reinference.producer == data.producer,
            Reinference.state == ReinferenceState.RUNNING,
        )
    )
    if running is not None:
        raise Conflict(
            f"re-inference {running} of {data.producer} is still running: cancel it first", field="producer"
        )
    return current, bool(stages)


def switch(ctx: AppContext, collection: str, data: VersionSwitch) -> ReinferencePublic:
    """Record a re-inference of the collection with ``data.version`` for the workers to compute (made
    current once complete, at once when every record has it already); see the module docstring."""
    from modelyard.catalog import reinfer
    from modelyard.catalog.service import get_collection

    with ctx.uow() as session:
        coll = get_collection(session, collection)
        current, by_stage = _check_switch(ctx, session, coll, data)
        job = Reinference(
            collection_id=coll.id,
            producer=data.producer,
            version=data.version,
            from_version=current,
            by_stage=by_stage,
        )
        session.add(job)
        session.flush()
        job_id = job.id
    reinfer.advance_one(ctx, job_id, compute=False)  # at once when nothing is left to compute
    if ctx.durable is not None:  # a worker in this process: start now, not on its next heartbeat
        ctx.reinfer.get().wake(ctx)
    return get_reinference(ctx, collection, job_id)


def _find_job(session: Session, collection: str, job_id: str) -> tuple[Collection, Reinference]:
    from modelyard.catalog.service import get_collection

    coll = get_collection(session, collection)
    job = session.get(Reinference, job_id)
    if job is None or job.collection_id != coll.id:
        raise NotFound(f"collection {collection!r} has no re-inference {job_id!r}", field="id")
    return coll, job


def _public(session: Session, coll: Collection, job: Reinference) -> ReinferencePublic:
    from modelyard.catalog.reinfer import progress

    total, done = progress(session, job)
    return ReinferencePublic(
        id=job.id,
        collection=coll.name,
        producer=job.producer,
        version=job.version,
        from_version=job.from_version,
        state=job.state,
        total=total,
        done=done,
        failed=job.failed,
        progress=round(done / total, 4) if total else 1.0,
        error=job.error,
        created_at=job.created_at,
        finished_at=job.finished_at,
    )


def get_reinference(ctx: AppContext, collection: str, job_id: str) -> ReinferencePublic:
    """A re-inference with its progress."""
    with ctx.uow() as session:
        return _public(session, *_find_job(session, collection, job_id))


def cancel(ctx: AppContext, collection: str, job_id: str) -> ReinferencePublic:
    """Stop a running re-inference: the current version stays; what it stored stays listed, not current.
    ``409`` once it has finished."""
    with ctx.uow() as session:
        job = _find_job(session, collection, job_id)[1]
        stopped = session.execute(
            update(Reinference)
            .where(Reinference.id == job_id, Reinference.state == ReinferenceState.RUNNING)
            .values(state=ReinferenceState.CANCELLED, finished_at=utcnow())
        )
        if not stopped.rowcount:  # type: ignore[attr-defined]
            raise Conflict(f"re-inference {job_id} has already {job.state}", field="id")
        of_job = select(RecordEvent.event_id).where(RecordEvent.reinference_id == job_id)
        events = list(session.scalars(of_job))
    control.cancel_events(ctx, events)  # its events not yet ended stop too
    return get_reinference(ctx, collection, job_id)


def make_current(session: Session, collection_id: str, producer: str, version: str) -> None:
    """Move the alias to ``version`` and mark that version's inferences current, in the caller's
    transaction (readers see all of it or none of it)."""
    from modelyard.catalog.service import touch

    alias(session, collection_id, producer, version)
    session.execute(
        update(ProducerVersion)
        .where(ProducerVersion.collection_id == collection_id, ProducerVersion.producer == producer)
        .values(previous=ProducerVersion.current, current=version, switched_at=utcnow())
    )
    session.execute(
        update(Inference)
        .where(Inference.collection_id == collection_id, Inference.producer == producer)
        .values(current=Inference.version == version)
    )
    touch(session, collection_id)


def kept_versions(session: Session, collection_id: str, producer: str) -> frozenset[str]:
    """The producer's current and previous versions: those whose vector indexes are worth keeping."""
    row = session.get(ProducerVersion, (collection_id, producer))
    return frozenset() if row is None else frozenset(v for v in (row.current, row.previous) if v)


def drop_stale(ctx: AppContext, collection_id: str, producer: str) -> None:
    """After a switch or a rollback: forget this host's vector indexes and ANN graphs of the producer's
    versions that are neither current nor previous (the previous one's stay, for a rollback)."""
    with ctx.uow() as session:
        keep = kept_versions(session, collection_id, producer)
    ctx.catalog.get().forget(collection_id, producer, keep)


def rollback(ctx: AppContext, collection: str, producer: str) -> ProducerVersionPublic:
    """Make the previous version current again (at once: its inferences were kept). ``409`` when there is
    no previous version or a re-inference of the producer is running."""
    from modelyard.catalog.service import get_collection

    with ctx.uow() as session:
        coll = get_collection(session, collection)
        row = session.get(ProducerVersion, (coll.id, producer))
        if row is None:
            raise NotFound(f"collection {collection!r} has no values of {producer!r}", field="producer")
        if row.previous is None:
            raise Conflict(f"{producer} has no previous version to roll back to", field="producer")
        running = session.scalar(
            select(func.count()).where(
                Reinference.collection_id == coll.id,
                Reinference.producer == producer,
                Reinference.state == ReinferenceState.RUNNING,
            )
        )
        if running:
            raise Conflict(f"a re-inference of {producer} is running: cancel it first", field="producer")
        make_current(session, coll.id, producer, row.previous)
        session.flush()
        session.refresh(row)
        coll_id, public = coll.id, _alias_public(session, coll, row)
    drop_stale(ctx, coll_id, producer)
    return public


def _alias_public(session: Session, coll: Collection, row: ProducerVersion) -> ProducerVersionPublic:
    job = session.scalars(
        select(Reinference)
        .where(Reinference.collection_id == coll.id, Reinference.producer == row.producer)
        .order_by(Reinference.created_at.desc(), Reinference.id.desc())
        .limit(1)
    ).first()
    return ProducerVersionPublic(
        producer=row.producer,
        current=row.current,
        previous=row.previous,
        switched_at=row.switched_at,
        reinference=_public(session, coll, job) if job is not None else None,
    )


def list_versions(ctx: AppContext, collection: str) -> VersionList:
    """Every producer of the collection: current and previous version, latest re-inference."""
    from modelyard.catalog.service import get_collection

    with ctx.uow() as session:
        coll = get_collection(session, collection)
        rows = session.scalars(
            select(ProducerVersion)
            .where(ProducerVersion.collection_id == coll.id)
            .order_by(ProducerVersion.producer)
        ).all()
        return VersionList(items=[_alias_public(session, coll, r) for r in rows])


def records_in_scope(job: Reinference) -> Any:
    """The condition on ``Record`` of the records a re-inference must give the new version: those with a
    source when a stage produces it, else those with values of the producer."""
    if job.by_stage:
        return Record.source.is_not(None)
    return exists().where(
        Inference.record_pk == Record.pk,
        Inference.producer == job.producer,
    )
