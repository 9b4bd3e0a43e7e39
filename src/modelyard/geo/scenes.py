"""Imagery in: STAC items posted (one Item, an ItemCollection, or a URL to either) are validated,
stored as scenes and matched against the active AOIs; each match queues a run.

A post is all or nothing: every item is checked first (schema, footprint, bands), and one bad item
rejects the post with every problem of every item listed (a 422), storing nothing. Posting an item again
stores nothing new and queues no second run (scenes are keyed by collection and id, runs by model, AOI
and scene), but matches it again, so an AOI added since gets its run. A post that queued runs wakes this
process's geo-run loop (if it runs one): they start at once, not at its next poll.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from modelyard import db
from modelyard.context import AppContext
from modelyard.errors import BadRequest, PayloadTooLarge, SceneNotFound, ValidationFailed
from modelyard.fetch import fetch
from modelyard.geo import bands as spectral
from modelyard.geo import matching, spatial
from modelyard.geo.dispatch import wake_runs
from modelyard.geo.models import Scene
from modelyard.geo.runs import enqueue_runs
from modelyard.geo.schemas import (
    BandPublic,
    Explained,
    RunQueued,
    SceneList,
    ScenePublic,
    SceneReceived,
    ScenesPosted,
)
from modelyard.geo.shapes import Footprint, ShapeError, footprint
from modelyard.geo.stac import StacProblem, check_item


@dataclass(slots=True)
class Checked:
    """One item that passed every check, and what was read from it."""

    item: dict[str, Any]
    shape: Footprint
    spectral: spectral.Spectral
    unshipped: list[str]
    when: datetime | None


@dataclass(slots=True)
class Batch:
    """The items of one post, checked: the good ones, and every problem of the others."""

    items: list[Checked] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    bad: int = 0


def _items(ctx: AppContext, body: Any) -> tuple[list[Any], str]:
    """The items a body holds, and the JSON path of the first (``$`` or ``$.features[0]``)."""
    if isinstance(body, dict) and "url" in body and "type" not in body:
        url = body["url"]
        if not isinstance(url, str) or set(body) != {"url"}:
            raise ValidationFailed(
                'a URL body is {"url": "https://..."} and nothing else',
                errors=[{"path": "$.url", "rule": "type", "detail": "a string, alone in the object"}],
                field="url",
            )
        fetched = fetch(ctx, url)
        try:
            body = orjson.loads(fetched.data)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"{url} is not JSON ({exc})", field="url") from None
        if isinstance(body, dict) and "url" in body and "type" not in body:
            raise ValidationFailed(
                f"{url} holds another URL, not a STAC item",
                errors=[
                    {"path": "$.url", "rule": "type", "detail": "a fetched document is not followed again"}
                ],
                field="url",
            )
    kind = body.get("type") if isinstance(body, dict) else None
    if kind == "Feature":
        return [body], "$"
    if kind == "FeatureCollection" and isinstance(body.get("features"), list):
        cap = ctx.settings.geo_item_collection_max
        if len(body["features"]) > cap:
            raise PayloadTooLarge(
                f"the ItemCollection has {len(body['features'])} items, over the cap of {cap} "
                "(MODELYARD_GEO_ITEM_COLLECTION_MAX); post it in parts",
                field="features",
                extra={"cap": cap, "setting": "MODELYARD_GEO_ITEM_COLLECTION_MAX"},
            )
        return list(body["features"]), "$.features"
    detail = "the body is a STAC Item (type Feature), an ItemCollection (type FeatureCollection with "
    detail += 'features) or {"url": ...}'
    raise ValidationFailed(
        detail, errors=[{"path": "$.type", "rule": "enum", "detail": detail}], field="type"
    )


def _at(prefix: str, index: int | None, problem: StacProblem) -> dict[str, Any]:
    base = prefix if index is None else f"{prefix}[{index}]"
    return {**problem.public(), "path": base + problem.path[1:]}


def _when(properties: dict[str, Any]) -> datetime | None:
    for key in ("datetime", "start_datetime"):
        value = properties.get(key)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                return None
    return None


def check(items: list[Any], prefix: str) -> Batch:
    """Check every item: schema, footprint, bands."""
    batch = Batch()
    for index, item in enumerate(items):
        at = None if prefix == "$" else index
        result = check_item(item)
        problems = list(result.problems)
        shape = None
        if not problems:
            try:
                shape = footprint(item.get("geometry"), ["geometry"])
            except ShapeError as exc:
                problems += exc.problems
            bands = spectral.normalise(item)
            problems += bands.problems
        if problems or shape is None:
            batch.bad += 1
            batch.problems += [_at(prefix, at, p) for p in problems]
            continue
        batch.items.append(Checked(item, shape, bands, result.unshipped, _when(item.get("properties") or {})))
    return batch


def _store(session: Session, checked: Checked) -> tuple[int, bool]:
    """The scene's id, and whether it is new (a scene is stored once per collection and STAC id)."""
    item = checked.item
    collection = item.get("collection") if isinstance(item.get("collection"), str) else None
    row = {
        "collection": collection,
        "stac_id": item["id"],
        "item": item,
        "geometry": checked.shape.geojson,
        "min_lon": checked.shape.bbox[0],
        "min_lat": checked.shape.bbox[1],
        "max_lon": checked.shape.bbox[2],
        "max_lat": checked.shape.bbox[3],
        "datetime": checked.when,
        "gsd": checked.spectral.gsd,
        "bands": [b.public() for b in checked.spectral.bands],
        "created_at": db.utcnow(),
    }
    # a unique key stops a second row, even from a post running at the same time (without a collection:
    # a partial one), so insert first and read the row that won when this one was skipped
    inserted = db.insert_new_returning(session, Scene.__table__, [row], Scene.id)
    if inserted:
        return int(inserted[0][0]), True
    same = Scene.collection.is_(None) if collection is None else Scene.collection == collection
    return int(session.scalar(select(Scene.id).where(same, Scene.stac_id == item["id"])) or 0), False


def post_scenes(ctx: AppContext, body: Any, *, explain: bool = False) -> ScenesPosted:
    """Validate, store and match the items ``body`` holds (see the module's docstring)."""
    items, prefix = _items(ctx, body)
    batch = check(items, prefix)
    if batch.problems:
        first = batch.problems[0]
        detail = f"{batch.bad} of {len(items)} item(s) invalid; first: {first['path']}: {first['detail']}"
        raise ValidationFailed(detail, errors=batch.problems, field=first["path"])
    index = spatial.index(ctx.db, ctx.settings.geo_spatial_index)
    received: list[SceneReceived] = []
    with ctx.db.writer() as session:
        wanted: list[tuple[str, int, int]] = []
        verdicts = []
        for checked in batch.items:
            scene_id, new = _store(session, checked)
            candidates = index.candidates(session, checked.shape.shape)
            judged = matching.judge_all(candidates, checked.spectral.bands, checked.spectral.gsd)
            verdicts.append(judged)
            wanted += [(v.aoi.model, v.aoi.id, scene_id) for v in judged if v.matched]
            received.append(
                SceneReceived(
                    scene_id=scene_id,
                    stac_id=checked.item["id"],
                    collection=checked.item.get("collection"),
                    new=new,
                    matches=[],
                    unvalidated_extensions=checked.unshipped,
                    explain=[Explained(**v.public()) for v in judged] if explain else None,
                )
            )
        runs = iter(enqueue_runs(session, wanted))
        for scene, judged in zip(received, verdicts, strict=True):
            for verdict in (v for v in judged if v.matched):
                run_id, new = next(runs)
                scene.matches.append(
                    RunQueued(aoi_id=verdict.aoi.id, model=verdict.aoi.model, run_id=run_id, new=new)
                )
    queued = sum(m.new for s in received for m in s.matches)
    if queued:  # committed: this process's worker claims them now, not at its next poll
        wake_runs(ctx)
    return ScenesPosted(
        received=len(received),
        new_scenes=sum(s.new for s in received),
        runs_queued=queued,
        scenes=received,
    )


def scene_public(row: Scene, *, item: bool = False) -> ScenePublic:
    """The wire form of a scene (with the item as received when ``item``)."""
    return ScenePublic(
        id=row.id,
        collection=row.collection,
        stac_id=row.stac_id,
        bbox=[row.min_lon, row.min_lat, row.max_lon, row.max_lat],
        datetime=db.aware(row.datetime),
        gsd=row.gsd,
        bands=[BandPublic(**b) for b in row.bands],
        created_at=db.aware(row.created_at),
        item=row.item if item else None,
    )


def get_scene(ctx: AppContext, scene_id: int) -> ScenePublic:
    """One scene, with its item."""
    with ctx.uow() as session:
        row = session.get(Scene, scene_id)
        if row is None:
            raise SceneNotFound(scene_id)
        return scene_public(row, item=True)


def list_scenes(
    ctx: AppContext,
    *,
    collection: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    offset: int = 0,
    limit: int = 100,
) -> SceneList:
    """Scenes, newest first: of ``collection``, whose bbox overlaps ``bbox``."""
    where: list[ColumnElement[bool]] = []
    if collection is not None:
        where.append(Scene.collection == collection)
    if bbox is not None:
        min_lon, min_lat, max_lon, max_lat = bbox
        where += [
            Scene.max_lon >= min_lon,
            Scene.min_lon <= max_lon,
            Scene.max_lat >= min_lat,
            Scene.min_lat <= max_lat,
        ]
    with ctx.uow() as session:
        total = session.scalar(select(func.count()).select_from(Scene).where(*where)) or 0
        rows = session.scalars(
            select(Scene).where(*where).order_by(Scene.id.desc()).offset(offset).limit(limit)
        ).all()
        return SceneList(items=[scene_public(r) for r in rows], total=total)
