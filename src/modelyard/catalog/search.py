"""Search a collection: filters on attributes and inferred fields (eq, ne, ranges, in, exists; and/or),
sort with keyset cursors, facets, text (``backends``), exact vector kNN (``vectors``), colour
(``colours``) and their fusion by reciprocal rank, each hit saying why it ranked. No FastAPI, no DBOS.

Field names: ``id``, ``title``, ``description``, ``source``, ``attributes.<path>`` and
``<producer>.<path>`` for the current inference of a producer (``palette.average``,
``aspect_ratio.aspect_ratio``). Every field named must have been seen in the collection, and every value
must be of the field's type; otherwise the search is refused (``InvalidQuery``) naming where and why.
Facets count values over the records that pass the filter.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from modelyard.catalog import backends, colours, columns, pgvector, service, vectors, versions
from modelyard.catalog.caches import CatalogCaches
from modelyard.catalog.filters import SCALARS, Planner
from modelyard.catalog.models import Inference, Record, Vector
from modelyard.catalog.schemas import ColourQuery, Filter, Hit, SearchQuery, SearchResult, VectorQuery, Why
from modelyard.context import AppContext
from modelyard.errors import InvalidQuery, RecordNotFound
from modelyard.paging import decode_cursor, encode_cursor

MAX_K = 1000
TEXT_DEPTH = 1000  # text hits ranked before a filter or fusion
FILTERED_TEXT_DEPTH = 10_000
RRF_K = 60
FACET_VALUES = 50
ALLOWED_KEPT = 64  # filters whose record sets are kept


def _fingerprint(query: SearchQuery) -> str:
    body = query.model_dump(mode="json", exclude={"cursor", "limit"}, by_alias=True)
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _cursor_state(query: SearchQuery) -> dict[str, Any] | None:
    if query.cursor is None:
        return None
    state = decode_cursor(query.cursor)
    if state.get("q") != _fingerprint(query):
        raise InvalidQuery(
            "this cursor belongs to another search: send the same query with it", field="cursor"
        )
    return state


@dataclass
class Ranked:
    """One ranking: pks best first with the score or distance that put each there, and the records'
    rows read with them if any (pgvector's: ``service.PUBLIC``'s columns by pk)."""

    name: str
    hits: list[tuple[int, float]]
    rows: dict[int, Any] = field(default_factory=dict)


def search(ctx: AppContext, collection: str, query: SearchQuery) -> SearchResult:
    """Run a search (see the module docstring)."""
    with ctx.db.reader() as session:
        plan = Planner(ctx, session, service.collection_state(session, collection))
        collection_id = plan.collection_id
        cond = plan.condition(query.filter, "filter") if query.filter is not None else None
        facets = _facets(session, plan, cond, query.facets)
        ranked = query.text is not None or query.vector is not None or query.colour is not None
        if not ranked:
            return _browse(session, plan, cond, query, facets)
        if query.sort is not None:
            raise InvalidQuery(
                "sort applies to filter-only searches; text, vector and colour rank", field="sort"
            )
        allowed = None
        if cond is not None and query.filter is not None:
            allowed = _allowed(ctx, session, plan, cond, query.filter)
        rankings = []
        if query.text is not None:
            rankings.append(_text(session, collection_id, query.text, allowed))
        if query.vector is not None:
            rankings.append(_vector(ctx, session, plan, query.vector, allowed))
        if query.colour is not None:
            rankings.append(_colour(ctx, session, plan, query.colour, allowed))
        return _fuse(session, query, rankings, facets, plan.versions)


def _allowed(ctx: AppContext, session: Session, plan: Planner, cond: Any, f: Filter) -> vectors.Allowed:
    """The pks that pass a filter (sorted), cached per filter until the collection's next write (its
    revision): found in numpy over the fields' columns (``columns``) where it can be, else by SQL."""
    caches = ctx.catalog.get()
    key = (plan.collection_id, orjson.dumps(f.model_dump(by_alias=True), option=orjson.OPT_SORT_KEYS))
    revision = plan.collection.revision
    hit = caches.allowed.get(key)
    if hit is not None and hit[0] == revision:
        caches.allowed.move_to_end(key)
        return vectors.Allowed((key, revision), hit[1])
    found = _by_columns(caches, plan, f)
    if found is None:
        found = np.sort(np.asarray(session.scalars(plan.select(Record.pk).where(cond)).all(), dtype=np.int64))
    caches.allowed[key] = (revision, found)
    while len(caches.allowed) > ALLOWED_KEPT:
        caches.allowed.popitem(last=False)
    return vectors.Allowed((key, revision), found)


def _by_columns(caches: CatalogCaches, plan: Planner, f: Filter) -> np.ndarray | None:
    """The pks passing ``f`` found in numpy, or None where SQL must answer."""
    wanted = columns.names(f)
    if any(plan.types[name][0] not in SCALARS for name in wanted):
        return None
    revision = plan.collection.revision
    got: dict[str, columns.Column] = {}
    for name in wanted:
        hit = caches.columns.get((plan.collection_id, name))
        if hit is None or hit[0] != revision:
            hit = caches.columns[(plan.collection_id, name)] = (revision, columns.load(plan, name))
        got[name] = hit[1]
    pks = next(iter(got.values())).pks
    if any(len(c.pks) != len(pks) for c in got.values()):
        return None
    mask = columns.evaluate(f, got, len(pks))
    return None if mask is None else pks[mask]


def _browse(
    session: Session, plan: Planner, cond: Any, query: SearchQuery, facets: dict[str, dict[str, int]]
) -> SearchResult:
    state = _cursor_state(query)
    base = plan.select(Record.pk)
    sort_expr = None
    if query.sort is not None:
        sort_expr = plan.field(query.sort.field, "sort.field")[1]
    base = plan.select(Record.pk) if cond is None else plan.select(Record.pk).where(cond)
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    page_query = plan.select(Record.pk, *([sort_expr] if sort_expr is not None else []))
    if cond is not None:
        page_query = page_query.where(cond)
    desc = query.sort is not None and query.sort.order == "desc"
    if state is not None:
        page_query = page_query.where(_after(state, sort_expr, desc))
    if sort_expr is None:
        page_query = page_query.order_by(Record.pk)
    else:
        page_query = page_query.order_by(
            sort_expr.is_(None), sort_expr.desc() if desc else sort_expr, Record.pk
        )
    rows = session.execute(page_query.limit(query.limit + 1)).all()
    more, rows = len(rows) > query.limit, rows[: query.limit]
    next_cursor = None
    if more and rows:
        last = rows[-1]
        key = [last[0]] if sort_expr is None else [last[0], last[1]]
        next_cursor = encode_cursor({"q": _fingerprint(query), "k": key})
    hits = [Hit(record=r) for r in _records(session, [r[0] for r in rows], query.inferred, plan.versions)]
    return SearchResult(hits=hits, total=total, facets=facets, next_cursor=next_cursor)


def _after(state: dict[str, Any], sort_expr: Any, desc: bool) -> Any:
    key = state.get("k")
    if not isinstance(key, list) or not key or not isinstance(key[0], int):
        raise InvalidQuery("malformed cursor: pass back the next_cursor of a response", field="cursor")
    pk = key[0]
    if sort_expr is None:
        return Record.pk > pk
    if len(key) != 2:
        raise InvalidQuery("malformed cursor: pass back the next_cursor of a response", field="cursor")
    value = key[1]
    if value is None:
        return and_(sort_expr.is_(None), Record.pk > pk)
    # op(): a boolean field compares as a value here, not as SQL's IS TRUE
    beyond = sort_expr.op("<" if desc else ">")(value)
    return or_(sort_expr.is_(None), beyond, and_(sort_expr.op("=")(value), Record.pk > pk))


def _facets(session: Session, plan: Planner, cond: Any, names: list[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for i, name in enumerate(names):
        kind, expr = plan.field(name, f"facets[{i}]")
        if kind not in SCALARS:
            raise InvalidQuery(
                f"field {name!r} is a {kind}: facets count scalar values", field=f"facets[{i}]"
            )
        count = func.count().label("n")
        query = plan.select(expr, count).where(expr.is_not(None))
        if cond is not None:
            query = query.where(cond)
        rows = session.execute(query.group_by(expr).order_by(count.desc(), expr).limit(FACET_VALUES)).all()
        out[name] = {_facet_key(v): int(n) for v, n in rows}
    return out


def _facet_key(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _text(session: Session, collection_id: str, text: str, allowed: vectors.Allowed | None) -> Ranked:
    depth = TEXT_DEPTH if allowed is None else FILTERED_TEXT_DEPTH
    hits = backends.text_search(session, collection_id, text, depth)
    if allowed is not None:
        keep = set(allowed.pks.tolist())
        hits = [h for h in hits if h[0] in keep][:TEXT_DEPTH]
    return Ranked("text", hits)


def _vector_field(plan: Planner, name: str, where: str) -> tuple[str, list[str], int]:
    if name not in plan.types:
        raise InvalidQuery(f"unknown field {name!r}", field=where)
    kind, dim = plan.types[name]
    if kind != "vector" or dim is None:
        raise InvalidQuery(f"field {name!r} holds {kind} values, not vectors", field=where)
    producer, *path = name.split(".")
    if producer == "attributes":
        raise InvalidQuery("vectors are searched in inferred fields, not attributes", field=where)
    return producer, path, dim


def _current_version(plan: Planner, producer: str) -> str | None:
    """The producer's current version, as the query read it (``catalog.versions``)."""
    return plan.versions.get(producer)


def _dim_at(plan: Planner, producer: str, path: list[str], version: str, dim: int) -> int:
    """The dimension of a vector field at ``version``: the field's own (the first seen) unless that
    version's vectors have another (a new model version may embed in another), read once per write."""

    def stored() -> int | None:
        found: int | None = plan.session.scalar(
            select(Vector.dim)
            .join(Inference, Inference.id == Vector.inference_id)
            .where(
                Inference.collection_id == plan.collection_id,
                Inference.producer == producer,
                Inference.version == version,
                Vector.path == ".".join(path),
            )
            .limit(1)
        )
        return found

    return plan.cached(f"dim:{producer}:{'.'.join(path)}@{version}", stored) or dim


def _check_k(k: int, where: str) -> None:
    if k > MAX_K:
        raise InvalidQuery(f"k is {k}; the cap is {MAX_K}", field=where)


def _nearest(
    ctx: AppContext, plan: Planner, producer: str, path: list[str], version: str, dim: int
) -> vectors.VectorIndex | pgvector.Space:
    """Where a vector field at a version is searched: pgvector when the database has it (copied in
    once per collection revision), else this process's index."""
    session = plan.session
    found = pgvector.capability(ctx.db, session)
    if found.available:
        space, total = plan.cached(
            f"pgvector:{producer}:{'.'.join(path)}@{version}/{dim}",
            lambda: _pg_synced(ctx, plan.collection_id, producer, path, version, dim),
        )
        field = (plan.collection_id, producer, ".".join(path), version)
        return pgvector.Space(session, space, dim, total, field, iterative=found.iterative)
    caches = ctx.catalog.get()
    if (plan.collection_id, producer, ".".join(path), version) not in caches.indexes:
        # a version this process has not searched: another may have switched meanwhile, so what this one
        # holds of versions neither current, previous nor asked for goes (``versions.drop_stale``)
        keep = versions.kept_versions(session, plan.collection_id, producer) | {version}
        caches.forget(plan.collection_id, producer, keep)
    return vectors.index_for(
        caches.indexes, session, plan.collection, producer, path, version, dim, caches.ann
    )


def _pg_synced(
    ctx: AppContext, collection_id: str, producer: str, path: list[str], version: str, dim: int
) -> tuple[str, int]:
    """The space copied in, committed in a transaction of its own (the search's session only reads)."""
    with ctx.uow() as session:
        space = pgvector.sync(session, collection_id, producer, path, version, dim)
        return space, pgvector.count(session, space)


def _vector(
    ctx: AppContext, session: Session, plan: Planner, q: VectorQuery, allowed: vectors.Allowed | None
) -> Ranked:
    _check_k(q.k, "vector.k")
    producer, path, dim = _vector_field(plan, q.field, "vector.field")
    if (q.record is None) == (q.vector is None):
        raise InvalidQuery("give either a record id or a vector", field="vector")
    version = q.version or _current_version(plan, producer) or ""
    dim = _dim_at(plan, producer, path, version, dim)
    index = _nearest(ctx, plan, producer, path, version, dim)
    exclude = None
    if q.record is not None:
        pk = session.scalar(
            select(Record.pk).where(Record.collection_id == plan.collection_id, Record.record_id == q.record)
        )
        if pk is None:
            raise RecordNotFound(plan.collection_id, q.record)
        found = index.vector_of(pk)
        if found is None:
            raise InvalidQuery(
                f"record {q.record!r} has no {q.field} at version {version}", field="vector.record"
            )
        vector, exclude = found, pk
    else:
        assert q.vector is not None
        if len(q.vector) != dim:
            raise InvalidQuery(
                f"the vector has {len(q.vector)} dimensions; {q.field} has {dim}", field="vector.vector"
            )
        vector = np.asarray(q.vector, dtype=np.float32)
        if not np.isfinite(vector).all():
            raise InvalidQuery("the vector must be finite numbers", field="vector.vector")
    hits = index.search(vector, q.k, q.metric, allowed=allowed, exclude=exclude, exact=q.exact)
    return Ranked("vector", hits, index.rows if isinstance(index, pgvector.Space) else {})


def _colour(
    ctx: AppContext, session: Session, plan: Planner, q: ColourQuery, allowed: vectors.Allowed | None
) -> Ranked:
    _check_k(q.k, "colour.k")
    name = f"{q.field}.embedding"
    if plan.types.get(name, ("", None))[0] != "vector":
        raise InvalidQuery(f"{q.field!r} is not a palette producer of this collection", field="colour.field")
    producer, path, dim = _vector_field(plan, name, "colour.field")
    version = _current_version(plan, producer) or ""
    dim = _dim_at(plan, producer, path, version, dim)
    vector = colours.query_vector(q.colours, colours.bins_of(dim))
    index = _nearest(ctx, plan, producer, path, version, dim)
    hits = index.search(vector, q.k, "cosine", allowed=allowed)
    return Ranked("colour", [(pk, 1.0 - dist) for pk, dist in hits])


def _fuse(
    session: Session,
    query: SearchQuery,
    rankings: list[Ranked],
    facets: dict[str, dict[str, int]],
    versions: dict[str, str],
) -> SearchResult:
    fused: dict[int, float] = {}
    for ranking in rankings:
        weight = query.weights.get(ranking.name, 1.0)  # type: ignore[call-overload]
        for rank, (pk, _) in enumerate(ranking.hits, start=1):
            fused[pk] = fused.get(pk, 0.0) + weight / (RRF_K + rank)
    order = sorted(fused, key=lambda pk: (-fused[pk], pk))
    state = _cursor_state(query)
    offset = 0
    if state is not None:
        offset = state.get("o")  # type: ignore[assignment]
        if not isinstance(offset, int) or offset < 0:
            raise InvalidQuery("malformed cursor: pass back the next_cursor of a response", field="cursor")
    page = order[offset : offset + query.limit]
    end = offset + len(page)
    next_cursor = encode_cursor({"q": _fingerprint(query), "o": end}) if end < len(order) else None
    known = {pk: row for ranking in rankings for pk, row in ranking.rows.items()}
    records = service.records_by_pk(session, page, query.inferred, versions, known)
    why = _why(rankings, page)
    fuse = len(rankings) > 1
    return SearchResult(
        hits=[
            Hit(record=r, why=Why(**why[pk], fused=round(fused[pk], 8) if fuse else None))
            for pk, r in zip(page, records, strict=True)
        ],
        total=len(order),
        facets=facets,
        next_cursor=next_cursor,
    )


def _why(rankings: list[Ranked], page: list[int]) -> dict[int, dict[str, float]]:
    """Why each hit of the page ranked, as plain fields (only the page's: a fusion ranks many more)."""
    why: dict[int, dict[str, float]] = {pk: {} for pk in page}
    for ranking in rankings:
        rank_of = f"{ranking.name}_rank"
        score_of = "vector_distance" if ranking.name == "vector" else f"{ranking.name}_score"
        for rank, (pk, score) in enumerate(ranking.hits, start=1):
            w = why.get(pk)
            if w is not None:
                w[rank_of], w[score_of] = rank, score
    return why


def _records(
    session: Session, pks: list[int], producers: list[str] | None, versions: dict[str, str]
) -> list[Any]:
    return service.records_by_pk(session, pks, producers, versions)
