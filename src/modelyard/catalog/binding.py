"""Collections bound to pipelines: new or changed records become events, and finished events become
inferences.

Submitting: a record whose raw data is new (a new record with a source, or a content hash that changed)
becomes one event of each bound pipeline, through the pipelines' own submission service. The event is
named from the collection, the record id and the content hash (the source when no hash is known), so
submitting it again is a no-op: nothing runs twice.

Harvesting: a durable sweep on every worker heartbeat (``durable.on_tick``, registered in
``catalog.workflows``) reads the record events whose pipeline event has finished and is not yet harvested,
and stores each done stage's output as an inference per (record, producer, version). The sweep was chosen
over a step inside the pipeline batch because it works wherever the event ran (any worker process, any
host) without the pipelines part knowing about the catalog, and because it survives a crash at any point:
the row is claimed and the inferences written in one transaction (a conditional UPDATE of ``harvested``
decides which worker harvests an event), so a repeat is harmless. The durable event log will later be the
trigger; the sweep then only catches up.

Producer and version of a stage: the model a stage uses (``features`` or a ``model`` stage) names it, at
the version the model resolves to when harvested; a model-less inferrer (``palette``, ``aspect_ratio``)
is its inferrer's name at the stage's ``version``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import CursorResult, delete, insert, or_, select, update
from sqlalchemy.orm import Session

from modelyard.catalog import fields, versions
from modelyard.catalog.models import Collection, Inference, Record, RecordEvent, Vector
from modelyard.catalog.service import Written, bound_pipelines, get_collection, touch
from modelyard.context import AppContext
from modelyard.db import utcnow
from modelyard.errors import BadRequest, Conflict, PipelineNotFound, RecordNotFound
from modelyard.pipelines import events, submission
from modelyard.pipelines.models import EVENT_TERMINAL, Event, StageRun, StageState
from modelyard.pipelines.schemas import EventCreate
from modelyard.pipelines.service import load_spec
from modelyard.pipelines.spec import RAW, StageSpec
from modelyard.pipelines.spec.kinds import stage_kind
from modelyard.pipelines.stages import cache, outputs

log = logging.getLogger("modelyard.catalog")
HARVEST_BATCH = 200
CHUNK = 500  # records per statement
SAMPLE = 50  # inferences of a batch whose fields are recorded


def event_name(collection: str, record_id: str, content: str, suffix: str = "") -> str:
    """The event name of a record's content: the same record and content always give the same name."""
    key = hashlib.sha256(content.encode()).hexdigest()[:16] if len(content) != 64 else content[:16]
    rid = record_id if len(record_id) <= 200 else hashlib.sha256(record_id.encode()).hexdigest()
    return f"catalog:{collection}/{rid}@{key}{suffix}"


def submit(
    ctx: AppContext,
    collection_id: str,
    written: Sequence[Written],
    *,
    suffix: str = "",
    pipelines: Sequence[str] | None = None,
    stages: list[str] | None = None,
    reinference_id: str | None = None,
) -> int:
    """Events of every bound pipeline (or of ``pipelines``: all their stages, or ``stages``) for the records
    whose raw data is new; returns events created."""
    due = [w.pk for w in written if w.changed_content]
    if not due:
        return 0
    with ctx.uow() as session:
        name = session.scalar(select(Collection.name).where(Collection.id == collection_id)) or ""
        if pipelines is None:
            pipelines = bound_pipelines(session, collection_id)
        rows = session.execute(
            select(Record.pk, Record.record_id, Record.source, Record.content_hash).where(Record.pk.in_(due))
        ).all()
    rows = [r for r in rows if r.source is not None]
    created = 0
    step = max(1, ctx.settings.pipeline_max_events_per_request)
    for pipeline in pipelines:
        for i in range(0, len(rows), step):
            chunk = rows[i : i + step]
            wanted = [
                EventCreate(
                    name=event_name(name, r.record_id, r.content_hash or r.source or "", suffix),
                    source=r.source or "",
                    stages=stages,
                )
                for r in chunk
            ]
            try:
                got = submission.submit_events(ctx, pipeline, wanted)
            except PipelineNotFound:  # deleted since it was bound: the records are stored regardless
                log.warning("bound pipeline is gone", extra={"pipeline": pipeline, "collection": name})
                break
            created += sum(1 for g in got if g.created)
            _track(
                ctx,
                collection_id,
                pipeline,
                [(r.pk, r.content_hash, g.id) for r, g in zip(chunk, got, strict=True)],
                reinference_id,
            )
    return created


def backfill(ctx: AppContext, collection_id: str, pipelines: Sequence[str]) -> int:
    """Every record with a source becomes an event of each of ``pipelines`` (just bound); returns events
    created. Named like any record event, so a record that already ran there does not run again."""
    created, after = 0, 0
    while True:
        with ctx.uow() as session:
            rows = session.execute(
                select(Record.pk, Record.record_id)
                .where(Record.collection_id == collection_id, Record.source.is_not(None), Record.pk > after)
                .order_by(Record.pk)
                .limit(CHUNK)
            ).all()
        if not rows:
            return created
        written = [Written(pk, rid, "unchanged", True) for pk, rid in rows]
        created += submit(ctx, collection_id, written, pipelines=pipelines)
        after = rows[-1][0]


def _track(
    ctx: AppContext,
    collection_id: str,
    pipeline: str,
    items: list[tuple[int, str | None, str]],
    reinference_id: str | None,
) -> None:
    with ctx.uow() as session:
        known = set(
            session.scalars(
                select(RecordEvent.event_id).where(RecordEvent.event_id.in_([e for _, _, e in items]))
            )
        )
        for pk, content_hash, event_id in items:
            if event_id not in known:
                known.add(event_id)
                session.add(
                    RecordEvent(
                        event_id=event_id,
                        record_pk=pk,
                        collection_id=collection_id,
                        pipeline=pipeline,
                        content_hash=content_hash,
                        reinference_id=reinference_id,
                    )
                )


def infer_now(ctx: AppContext, collection: str, record_id: str) -> list[str]:
    """Run a record through every bound pipeline now (a new event each); returns the event ids."""
    with ctx.uow() as session:
        coll = get_collection(session, collection)
        row = session.scalar(
            select(Record).where(Record.collection_id == coll.id, Record.record_id == record_id)
        )
        if row is None:
            raise RecordNotFound(collection, record_id)
        if row.source is None:
            raise Conflict(f"record {record_id!r} has no source to infer from", field="source")
        if not bound_pipelines(session, coll.id):
            raise Conflict(f"collection {collection!r} is bound to no pipeline", field="pipelines")
        coll_id, written = coll.id, Written(row.pk, row.record_id, "unchanged", True)
    submit(ctx, coll_id, [written], suffix=f"~{utcnow().strftime('%Y%m%dT%H%M%S.%f')}")
    with ctx.uow() as session:
        return list(
            session.scalars(
                select(RecordEvent.event_id)
                .where(RecordEvent.record_pk == written.pk, RecordEvent.harvested.is_(False))
                .order_by(RecordEvent.created_at)
            )
        )


def producer_of(ctx: AppContext, stage: StageSpec) -> tuple[str, str]:
    """Who a stage's output is from: (model name, resolved version) or (inferrer or stage name, version)."""
    uses = stage_kind(stage.kind).uses(stage)
    if uses.model is not None:
        resolved = cache.resolve(stage, ctx.inference)
        name, _, version = resolved.rpartition("@")
        return name, version
    return str(stage.config.get("inferrer") or stage.name), stage.version


def searchable(kind: str, value: Any) -> Any:
    """The values a stage output of ``kind`` gives an inference: a JSON value, an array as a flat list,
    or None (images and bytes are outputs to fetch, not values to search)."""
    if kind == "array":
        return np.asarray(value).reshape(-1).tolist()
    return value if kind == "json" else None


def stored_values(kind: str | None, result: Any, read: Callable[[], bytes]) -> Any:
    """The values of a stored stage output (``read`` gives its bytes; inline JSON needs no read)."""
    if kind not in ("json", "array"):
        return None
    if kind == "json" and result is not None:
        return result
    return searchable(kind, outputs.decode(kind, read()))


def _values(ctx: AppContext, event_id: str, run: StageRun) -> Any:
    return stored_values(run.output_kind, run.result, lambda: events.read_output(ctx, event_id, run.stage)[0])


def store(
    session: Session,
    collection_id: str,
    producer: str,
    version: str,
    items: Sequence[tuple[int, Any, str | None]],
) -> None:
    """Store inferences of one producer at one version, each (record pk, values, event id), replacing the
    same version's. They are current when ``version`` is the producer's current version in the collection
    (the first version stored becomes it); another version waits for a switch (``catalog.versions``)."""
    is_current = versions.alias(session, collection_id, producer, version) == version
    for i in range(0, len(items), CHUNK):
        chunk = items[i : i + CHUNK]
        pks = [pk for pk, _, _ in chunk]
        if is_current:
            session.execute(
                update(Inference)
                .where(Inference.record_pk.in_(pks), Inference.producer == producer)
                .values(current=False)
            )
        # a new row (a new id) even for the same version: vector indexes read what is newer than they saw
        session.execute(
            delete(Inference).where(
                Inference.record_pk.in_(pks), Inference.producer == producer, Inference.version == version
            )
        )
        split = [fields.split_vectors(values) for _, values, _ in chunk]
        now = utcnow()
        session.execute(  # many rows in one call, the driver's own loop: no RETURNING, no ORM rows
            insert(Inference.__table__),  # type: ignore[arg-type]
            [
                {
                    "record_pk": pk,
                    "collection_id": collection_id,
                    "producer": producer,
                    "version": version,
                    "values": stored,
                    "current": is_current,
                    "event_id": event_id,
                    "created_at": now,
                }
                for (pk, _, event_id), (stored, _) in zip(chunk, split, strict=True)
            ],
        )
        if any(found for _, found in split):
            ids: dict[int, int] = {
                pk: iid
                for pk, iid in session.execute(
                    select(Inference.record_pk, Inference.id).where(
                        Inference.record_pk.in_(pks),
                        Inference.producer == producer,
                        Inference.version == version,
                    )
                )
            }
            vector_rows = [
                {"inference_id": ids[pk], "path": path, "dim": dim, "data": data}
                for (pk, _, _), (_, found) in zip(chunk, split, strict=True)
                for path, data, dim in found
            ]
            session.execute(insert(Vector.__table__), vector_rows)  # type: ignore[arg-type]
    touch(session, collection_id)
    seen: dict[str, tuple[str, str, int | None]] = {}
    for _, values, _ in items[:SAMPLE]:  # fields of a producer look alike: a sample finds them
        for found in fields.paths(producer, values):
            seen.setdefault(found[0], found)
    fields.observe(session, collection_id, seen.values())


def harvest(ctx: AppContext, *, limit: int = HARVEST_BATCH) -> int:
    """Store the outputs of finished events of bound pipelines as inferences; returns events harvested."""
    with ctx.uow() as session:
        due = session.execute(
            select(
                RecordEvent.event_id,
                RecordEvent.record_pk,
                RecordEvent.collection_id,
                RecordEvent.harvested_runs,
                Event.runs,
                Event.pipeline_id,
                Event.version,
            )
            .join(Event, Event.id == RecordEvent.event_id)
            .where(
                or_(RecordEvent.harvested.is_(False), Event.runs > RecordEvent.harvested_runs),
                Event.state.in_(list(EVENT_TERMINAL)),
            )
            .limit(limit)
        ).all()
    with ctx.uow() as session:
        runs: dict[str, list[StageRun]] = {}
        for run in session.scalars(
            select(StageRun).where(
                StageRun.event_id.in_([d.event_id for d in due]),
                StageRun.state == StageState.DONE,
                StageRun.stage != RAW,
            )
        ):
            runs.setdefault(run.event_id, []).append(run)
    producers: dict[tuple[str, int, str], tuple[str, str]] = {}  # one model lookup per stage a batch
    found = []
    for event_id, record_pk, collection_id, seen, ran, pipeline_id, version in due:
        spec = load_spec(ctx, pipeline_id, version)[1]
        items = []
        for run in runs.get(event_id, []):
            stage = spec.stages.get(run.stage)
            values = _values(ctx, event_id, run) if stage is not None else None
            if stage is None or values is None:
                continue
            key = (pipeline_id, version, run.stage)
            if key not in producers:
                producers[key] = producer_of(ctx, stage)
            items.append((*producers[key], values))
        found.append((event_id, record_pk, collection_id, seen, ran, items))
    return _store_claimed(ctx, found)


def _store_claimed(ctx: AppContext, found: list[tuple[str, int, str, int, int, list[Any]]]) -> int:
    """Claim each event (a re-run one, with more runs than harvested, again: its outputs replace the same
    version's) and store the outputs of those claimed, grouped by producer and version, in one
    transaction; an event another worker claimed first is skipped."""
    done = 0
    groups: dict[tuple[str, str, str], dict[int, tuple[Any, str]]] = {}
    with ctx.uow() as session:
        for event_id, record_pk, collection_id, seen, ran, items in found:
            claimed: CursorResult[Any] = session.execute(  # type: ignore[assignment]
                update(RecordEvent)
                .where(RecordEvent.event_id == event_id, RecordEvent.harvested_runs == seen)
                .values(harvested=True, harvested_runs=ran)
            )
            if not claimed.rowcount:
                continue
            done += 1
            for producer, pversion, values in items:  # a record twice in a batch: the later event wins
                groups.setdefault((collection_id, producer, pversion), {})[record_pk] = (values, event_id)
        for (collection_id, producer, pversion), by_pk in groups.items():
            store(session, collection_id, producer, pversion, [(pk, v, e) for pk, (v, e) in by_pk.items()])
    return done


def put_inference(
    ctx: AppContext, collection: str, record_id: str, producer: str, version: str, values: Any
) -> None:
    """Store what a producer outside modelyard's pipelines said about a record (e.g. vectors computed
    elsewhere), as the current inference of that producer."""
    with ctx.uow() as session:
        coll = get_collection(session, collection)
        pk = session.scalar(
            select(Record.pk).where(Record.collection_id == coll.id, Record.record_id == record_id)
        )
        if pk is None:
            raise RecordNotFound(collection, record_id)
        _check_dims(session, coll.id, producer, version, values)
        store(session, coll.id, producer, version, [(pk, values, None)])


def _check_dims(session: Session, collection_id: str, producer: str, version: str, values: Any) -> None:
    """``BadRequest`` naming the vector when one has another dimension than the same field's vectors of
    the same producer version (it could never be searched with them)."""
    for path, _, dim in fields.split_vectors(values)[1]:
        known = session.scalar(
            select(Vector.dim)
            .join(Inference, Inference.id == Vector.inference_id)
            .where(
                Inference.collection_id == collection_id,
                Inference.producer == producer,
                Inference.version == version,
                Vector.path == path,
            )
            .limit(1)
        )
        if known is not None and known != dim:
            name = ".".join(p for p in (producer, path) if p)
            raise BadRequest(
                f"{name} has {known} dimensions at version {version}; this vector has {dim}",
                field=path or producer,
            )


def put_inferences(
    ctx: AppContext, collection: str, producer: str, version: str, items: Sequence[tuple[str, Any]]
) -> int:
    """``put_inference`` for many records at once (one transaction); unknown record ids are skipped and
    not counted. Returns how many were stored."""
    with ctx.uow() as session:
        coll = get_collection(session, collection)
        pks: dict[str, int] = dict(
            session.execute(
                select(Record.record_id, Record.pk).where(
                    Record.collection_id == coll.id, Record.record_id.in_([rid for rid, _ in items])
                )
            ).all()
        )
        latest = dict(items)  # a record named twice: the later values win
        known = [(pks[rid], values, None) for rid, values in latest.items() if rid in pks]
        store(session, coll.id, producer, version, known)
        return len(known)
