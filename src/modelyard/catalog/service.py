"""Collections and records: create, read, update, delete, list; upsert many records at once (the bulk
ingest and single writes share it), and the record page with its current inferences. No FastAPI, no DBOS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from modelyard.catalog import backends, fields
from modelyard.catalog.models import Binding, Collection, Inference, Record, Vector
from modelyard.catalog.schemas import (
    CollectionCreate,
    CollectionList,
    CollectionPublic,
    CollectionUpdate,
    InferenceList,
    InferencePublic,
    RecordCreate,
    RecordList,
    RecordPublic,
    RecordUpdate,
)
from modelyard.catalog.versions import current_versions
from modelyard.context import AppContext
from modelyard.db import utcnow
from modelyard.errors import AlreadyExists, CollectionNotFound, InvalidQuery, RecordNotFound
from modelyard.paging import decode_cursor, encode_cursor
from modelyard.pipelines.service import get_pipeline
from modelyard.pipelines.stages.sources import parse_source

Outcome = Literal["created", "updated", "unchanged"]


def get_collection(session: Session, name: str) -> Collection:
    """The collection called ``name``."""
    row = session.scalar(select(Collection).where(Collection.name == name))
    if row is None:
        raise CollectionNotFound(name)
    return row


@dataclass(frozen=True, slots=True)
class CollectionState:
    """What a search reads of a collection: its id and the counters every cache of it is checked against
    (``revision``, bumped by each write, and ``deletions``)."""

    id: str
    name: str
    revision: int
    deletions: int


def collection_state(session: Session, name: str) -> CollectionState:
    """The collection called ``name`` as one row of plain values (no ORM object: read on every query)."""
    row = backends.collection_row(session, name)
    if row is None:
        raise CollectionNotFound(name)
    return CollectionState(*row)


def bound_pipelines(session: Session, collection_id: str) -> list[str]:
    """Names of the pipelines a collection is bound to."""
    return list(
        session.scalars(
            select(Binding.pipeline).where(Binding.collection_id == collection_id).order_by(Binding.pipeline)
        )
    )


def _bind(session: Session, collection: Collection, pipelines: Sequence[str]) -> None:
    for name in pipelines:
        get_pipeline(session=session, name=name)  # 404 for a pipeline that does not exist
    session.execute(delete(Binding).where(Binding.collection_id == collection.id))
    for name in dict.fromkeys(pipelines):
        session.add(Binding(collection_id=collection.id, pipeline=name))


def touch(session: Session, collection_id: str) -> None:
    """Note that the collection's records or inferences changed (cached filter results are stale)."""
    session.execute(
        update(Collection).where(Collection.id == collection_id).values(revision=Collection.revision + 1)
    )


def _public(session: Session, row: Collection) -> CollectionPublic:
    count = session.scalar(select(func.count()).where(Record.collection_id == row.id)) or 0
    return CollectionPublic(
        name=row.name,
        description=row.description,
        pipelines=bound_pipelines(session, row.id),
        records=count,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def create_collection(ctx: AppContext, data: CollectionCreate) -> CollectionPublic:
    """A new collection (409 when the name is taken), bound to ``data.pipelines``."""
    with ctx.uow() as session:
        if session.scalar(select(Collection.id).where(Collection.name == data.name)) is not None:
            raise AlreadyExists(f"collection {data.name!r} already exists", field="name")
        row = Collection(name=data.name, description=data.description)
        session.add(row)
        session.flush()
        _bind(session, row, data.pipelines)
        session.flush()
        return _public(session, row)


def get_collection_public(ctx: AppContext, name: str) -> CollectionPublic:
    """One collection."""
    with ctx.uow() as session:
        return _public(session, get_collection(session, name))


def update_collection(ctx: AppContext, name: str, data: CollectionUpdate) -> CollectionPublic:
    """Change a collection's description or bound pipelines; the records already there become events of
    each newly bound pipeline (backfill)."""
    from modelyard.catalog import binding

    with ctx.uow() as session:
        row = get_collection(session, name)
        added: list[str] = []
        if data.description is not None:
            row.description = data.description
        if data.pipelines is not None:
            before = set(bound_pipelines(session, row.id))
            _bind(session, row, data.pipelines)
            added = [p for p in dict.fromkeys(data.pipelines) if p not in before]
        row.updated_at = utcnow()
        collection_id = row.id
    if added:
        binding.backfill(ctx, collection_id, added)
    return get_collection_public(ctx, name)


def delete_collection(ctx: AppContext, name: str) -> None:
    """Delete a collection with its records and inferences."""
    with ctx.uow() as session:
        row = get_collection(session, name)
        backends.forget_text(session, collection_id=row.id)
        session.execute(delete(Inference).where(Inference.collection_id == row.id))
        session.execute(delete(Record).where(Record.collection_id == row.id))
        session.delete(row)
        collection_id = row.id
    ctx.catalog.get().forget(collection_id)  # its vector indexes and saved ANN graphs


def list_collections(ctx: AppContext, *, offset: int = 0, limit: int = 100) -> CollectionList:
    """Collections by name."""
    with ctx.uow() as session:
        total = session.scalar(select(func.count()).select_from(Collection)) or 0
        rows = session.scalars(select(Collection).order_by(Collection.name).offset(offset).limit(limit)).all()
        return CollectionList(items=[_public(session, r) for r in rows], total=total)


def check_source(ctx: AppContext, source: str | None) -> None:
    """``BadRequest`` (field ``source``) for a location pipeline events would refuse."""
    if source is not None:
        parse_source(source, data_dir=ctx.settings.data_dir)


@dataclass(frozen=True, slots=True)
class Written:
    """What an upsert did to one record, and whether its raw data is new (an event is due)."""

    pk: int
    record_id: str
    outcome: Outcome
    changed_content: bool


def _content_key(record: RecordCreate) -> str | None:
    return record.content_hash or record.source


def upsert(session: Session, collection_id: str, records: Sequence[RecordCreate]) -> list[Written]:
    """Insert or replace records by id (ids must be distinct); the caller checked every source."""
    ids = [r.id for r in records]
    existing = {
        row.record_id: row
        for row in session.scalars(
            select(Record).where(Record.collection_id == collection_id, Record.record_id.in_(ids))
        )
    }
    now, out, new_rows = utcnow(), [], []
    found: list[tuple[str, str, int | None]] = []
    for rec in records:
        found.extend(fields.paths("attributes", rec.attributes))
        row = existing.get(rec.id)
        if row is None:
            row = Record(collection_id=collection_id, record_id=rec.id, created_at=now)
            new_rows.append(row)
            outcome: Outcome = "created"
            changed = rec.source is not None
        else:
            before = (row.title, row.description, row.source, row.attributes, row.content_hash)
            after = (rec.title, rec.description, rec.source, rec.attributes, rec.content_hash)
            outcome = "unchanged" if before == after else "updated"
            changed = rec.source is not None and (row.content_hash or row.source) != _content_key(rec)
        row.title, row.description, row.source = rec.title, rec.description, rec.source
        row.attributes, row.content_hash = rec.attributes, rec.content_hash
        if outcome != "unchanged":
            row.updated_at = now
        out.append((row, outcome, changed))
    session.add_all(new_rows)
    session.flush()
    fields.observe(session, collection_id, found)
    touched = [row for row, outcome, _ in out if outcome != "unchanged"]
    if touched:
        touch(session, collection_id)
    backends.index_text(session, [(r.pk, collection_id, r.title, r.description) for r in touched])
    return [Written(row.pk, row.record_id, outcome, changed) for row, outcome, changed in out]


def _find(session: Session, collection: Collection, record_id: str) -> Record:
    row = session.scalar(
        select(Record).where(Record.collection_id == collection.id, Record.record_id == record_id)
    )
    if row is None:
        raise RecordNotFound(collection.name, record_id)
    return row


def with_vectors(session: Session, rows: Sequence[tuple[int, Any]]) -> dict[int, Any]:
    """Inference values by id with their vectors put back in place."""
    values = {iid: v for iid, v in rows}
    ids = [iid for iid, v in rows if isinstance(v, dict)]
    found: dict[int, dict[str, list[float]]] = {}
    for i in range(0, len(ids), 500):
        for iid, path, data in session.execute(
            select(Vector.inference_id, Vector.path, Vector.data).where(
                Vector.inference_id.in_(ids[i : i + 500])
            )
        ):
            found.setdefault(iid, {})[path] = np.frombuffer(data, dtype=np.float32).tolist()
    return {iid: fields.merge_vectors(v, found[iid]) if iid in found else v for iid, v in values.items()}


def current_inferences(
    session: Session,
    pks: Sequence[int],
    producers: Sequence[str] | None,
    versions: dict[str, str],
) -> dict[int, dict[str, object]]:
    """The values of every producer (or of ``producers`` only) at its current version (``versions``:
    producer -> version, read once by the caller), per record."""
    got: dict[int, dict[str, object]] = {pk: {} for pk in pks}
    wanted = [p for p in versions if producers is None or p in producers]
    if pks and wanted:  # else nothing to read (a search page asking for no inferences)
        query = select(Inference.id, Inference.record_pk, Inference.producer, Inference.values).where(
            Inference.record_pk.in_(list(pks)),
            or_(*[and_(Inference.producer == p, Inference.version == versions[p]) for p in wanted]),
        )
        rows = session.execute(query).all()
        values = with_vectors(session, [(r.id, r.values) for r in rows])
        for r in rows:
            got[r.record_pk][r.producer] = values[r.id]
    return got


def record_public(
    row: Record | backends.RecordRow, inferred: dict[str, object] | None = None
) -> RecordPublic:
    """The wire form of a record."""
    return RecordPublic(
        id=row.record_id,
        title=row.title,
        description=row.description,
        source=row.source,
        attributes=row.attributes,
        content_hash=row.content_hash,
        inferred=inferred or {},
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def records_public(
    session: Session,
    rows: Sequence[Record],
    producers: Sequence[str] | None = None,
    versions: dict[str, str] | None = None,
) -> list[RecordPublic]:
    """Records of one collection with their current inferences (of every producer, or of ``producers``;
    at ``versions`` when the caller read them already), one query for all."""
    if versions is None:
        versions = current_versions(session, rows[0].collection_id) if rows else {}
    inferred = current_inferences(session, [r.pk for r in rows], producers, versions)
    return [record_public(r, inferred[r.pk]) for r in rows]


def records_by_pk(
    session: Session,
    pks: Sequence[int],
    producers: Sequence[str] | None,
    versions: dict[str, str],
    known: dict[int, Any] | None = None,
) -> list[RecordPublic]:
    """Records by pk, in the order of ``pks``, with their inferences at ``versions``: the columns a
    record shows (``backends.RECORD_COLUMNS``), read as plain rows in one query (a search page; no ORM
    objects) unless ``known`` (rows of those columns by pk, read already) holds them."""
    if not pks:
        return []
    rows: dict[int, Any] = dict(known or {})
    missing = [pk for pk in pks if pk not in rows]
    if missing:
        rows.update((r.pk, r) for r in backends.record_rows(session, missing))
    inferred = current_inferences(session, pks, producers, versions)
    return [record_public(rows[pk], inferred[pk]) for pk in pks]


def get_record(ctx: AppContext, collection: str, record_id: str) -> RecordPublic:
    """A record with the current version's inferred values."""
    with ctx.uow() as session:
        row = _find(session, get_collection(session, collection), record_id)
        return records_public(session, [row])[0]


def record_inferences(ctx: AppContext, collection: str, record_id: str) -> InferenceList:
    """Every inference of a record, every version, newest first."""
    with ctx.uow() as session:
        row = _find(session, get_collection(session, collection), record_id)
        rows = session.scalars(
            select(Inference)
            .where(Inference.record_pk == row.pk)
            .order_by(Inference.created_at.desc(), Inference.id.desc())
        ).all()
        values = with_vectors(session, [(i.id, i.values) for i in rows])
        versions = current_versions(session, row.collection_id)
        return InferenceList(
            items=[
                InferencePublic(
                    producer=i.producer,
                    version=i.version,
                    current=versions.get(i.producer) == i.version,
                    values=values[i.id],
                    event_id=i.event_id,
                    created_at=i.created_at,
                )
                for i in rows
            ]
        )


def put_record(ctx: AppContext, collection: str, data: RecordCreate) -> tuple[RecordPublic, Written]:
    """Create or replace one record; a new or changed one becomes an event of each bound pipeline."""
    from modelyard.catalog import binding

    check_source(ctx, data.source)
    with ctx.uow() as session:
        coll = get_collection(session, collection)
        written = upsert(session, coll.id, [data])[0]
        collection_id = coll.id
    binding.submit(ctx, collection_id, [written])
    return get_record(ctx, collection, data.id), written


def update_record(ctx: AppContext, collection: str, record_id: str, data: RecordUpdate) -> RecordPublic:
    """Change some fields of a record."""
    with ctx.uow() as session:
        row = _find(session, get_collection(session, collection), record_id)
        fields_ = set(RecordCreate.model_fields)
        merged = RecordCreate.model_validate(record_public(row).model_dump(include=fields_))
    changes = data.model_dump(exclude_unset=True)
    return put_record(ctx, collection, merged.model_copy(update=changes))[0]


def delete_record(ctx: AppContext, collection: str, record_id: str) -> None:
    """Delete a record and its inferences."""
    with ctx.uow() as session:
        coll = get_collection(session, collection)
        row = _find(session, coll, record_id)
        backends.forget_text(session, pks=[row.pk])
        session.execute(delete(Inference).where(Inference.record_pk == row.pk))
        session.delete(row)
        coll.deletions += 1
        coll.revision += 1


def list_records(ctx: AppContext, collection: str, *, cursor: str | None, limit: int) -> RecordList:
    """Records in insertion order, a page at a time (keyset cursor: stable while records change)."""
    after = 0
    if cursor is not None:
        pk = decode_cursor(cursor).get("after")
        if not isinstance(pk, int):
            raise InvalidQuery("malformed cursor: pass back the next_cursor of a response", field="cursor")
        after = pk
    with ctx.uow() as session:
        coll = get_collection(session, collection)
        total = session.scalar(select(func.count()).where(Record.collection_id == coll.id)) or 0
        rows = session.scalars(
            select(Record)
            .where(Record.collection_id == coll.id, Record.pk > after)
            .order_by(Record.pk)
            .limit(limit + 1)
        ).all()
        more = len(rows) > limit
        rows = rows[:limit]
        items = records_public(session, rows)
    nxt = encode_cursor({"after": rows[-1].pk}) if more and rows else None
    return RecordList(items=items, total=total, next_cursor=nxt)
