"""Results back from runs: the callback (``report``: a single-use token, a STAC label item, its GeoJSON
inline or at a URL; all checked before anything is stored) and the predictions recorded, listed as a
STAC ItemCollection."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from modelyard import db
from modelyard.errors import (
    BadRequest,
    NotFound,
    RunNotFound,
    TokenExpired,
    TokenUsed,
    Unauthorized,
    ValidationFailed,
)
from modelyard.fetch import fetch
from modelyard.geo import labels
from modelyard.geo.models import GeoRun, Scene
from modelyard.geo.run_models import GeoPrediction, RunToken
from modelyard.geo.run_schemas import LabelSummary, PredictionPublic
from modelyard.geo.runs import announce, hash_token
from modelyard.geo.stac.validate import StacProblem

if TYPE_CHECKING:
    from modelyard.context import AppContext

API = "/api/v1"


def _token_problem(row: RunToken | None, token: str, now: datetime) -> Exception | None:
    """Why ``token`` may not report for this run (None: it may): 401, 409 or 410."""
    if row is None or not hmac.compare_digest(row.token_hash, hash_token(token)):
        return Unauthorized("this token is not the run's (each attempt has its own)")
    if row.used_at is not None:
        return TokenUsed("this run's token has already reported its results; it is single-use")
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=now.tzinfo)
    if expires <= now:
        return TokenExpired("this run's token has expired (the run is over or past its timeout)")
    return None


def check_token(ctx: AppContext, run_id: int, token: str) -> None:
    """Raise unless ``token`` may report run ``run_id`` now (a read: nothing is written)."""
    with ctx.uow() as session:
        if session.get(GeoRun, run_id) is None:
            raise RunNotFound(run_id)
        problem = _token_problem(session.get(RunToken, run_id), token, db.utcnow())
    if problem is not None:
        raise problem


def _invalid(problems: list[StacProblem]) -> ValidationFailed:
    first = problems[0]
    return ValidationFailed(
        f"the label item is not valid: {first.path}: {first.detail}"
        + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
        errors=[p.public() for p in problems],
        field=first.path,
    )


def _asset_bytes(ctx: AppContext, asset: dict[str, Any], inline: bytes | None) -> bytes:
    if inline is not None:
        return inline
    href = asset.get("href")
    if not isinstance(href, str) or not href.startswith(("http://", "https://")):
        raise BadRequest(
            "the GeoJSON asset's href is not an http(s) URL; upload it inline (multipart part 'file')",
            field="assets.href",
        )
    return fetch(ctx, href).data


def report(
    ctx: AppContext, run_id: int, token: str, item_data: bytes, inline: bytes | None
) -> PredictionPublic:
    """Record what run ``run_id`` found: a STAC label item (``item_data``) whose GeoJSON asset is
    ``inline`` or fetched from its href. The token is checked first (401 wrong, 409 used, 410 expired),
    then the item (label schema), the GeoJSON (parses, geometries valid); only then is the GeoJSON
    stored, the prediction recorded and the token spent, in one transaction (``geo.results.available``)."""
    check_token(ctx, run_id, token)
    try:
        item = orjson.loads(item_data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the label item is not valid JSON: {exc}", field="item") from None
    try:
        key, asset = labels.check_label_item(item)
        body = _asset_bytes(ctx, asset, inline)
        features = labels.parse_geojson(body)
    except labels.LabelProblems as exc:
        raise _invalid(exc.problems) from None
    counted = labels.summarise(features, labels.class_property(item))
    uri = f"geo/predictions/{run_id}/{hashlib.sha256(body).hexdigest()[:16]}.geojson"
    ctx.storage.put_bytes(uri, body)
    try:
        with ctx.uow() as session:
            prediction = _record(session, run_id, token, item, key, uri, counted)
            return _public(prediction)
    except BaseException:
        ctx.storage.delete(uri)
        raise


def _record(
    session: Session,
    run_id: int,
    token: str,
    item: dict[str, Any],
    key: str,
    uri: str,
    counted: labels.Counted,
) -> GeoPrediction:
    now = db.utcnow()
    spent = session.execute(  # type: ignore[attr-defined]
        update(RunToken)
        .where(
            RunToken.run_id == run_id,
            RunToken.token_hash == hash_token(token),
            RunToken.used_at.is_(None),
            RunToken.expires_at > now,
        )
        .values(used_at=now)
    ).rowcount
    if not spent:  # another report got there first, or it expired since the check
        problem = _token_problem(session.get(RunToken, run_id), token, now)
        raise problem or TokenUsed("this run's token has already reported its results")
    run = session.get_one(GeoRun, run_id)
    scene = session.get_one(Scene, run.scene_id)
    prediction = GeoPrediction(
        run_id=run.id,
        model=run.model,
        model_version=run.model_version,
        aoi_id=run.aoi_id,
        scene_id=run.scene_id,
        uri=uri,
        item={**item, "modelyard:label_asset": key},
        summary=counted.public(),
        min_lon=scene.min_lon,
        min_lat=scene.min_lat,
        max_lon=scene.max_lon,
        max_lat=scene.max_lat,
        observed_at=scene.datetime,
        created_at=now,
    )
    session.add(prediction)
    session.flush()
    announce(
        session,
        "geo.results.available",
        run,
        prediction_id=prediction.id,
        uri=uri,
        summary=counted.public(),
    )
    return prediction


def _public(p: GeoPrediction) -> PredictionPublic:
    return PredictionPublic(
        id=p.id,
        run_id=p.run_id,
        model=p.model,
        model_version=p.model_version,
        aoi_id=p.aoi_id,
        scene_id=p.scene_id,
        uri=p.uri,
        summary=LabelSummary.model_validate(p.summary),
        created_at=p.created_at,
    )


def prediction_geojson(ctx: AppContext, prediction_id: int) -> bytes:
    """The stored GeoJSON of a prediction."""
    with ctx.uow() as session:
        found = session.get(GeoPrediction, prediction_id)
        if found is None:
            raise _no_prediction(prediction_id)
        uri = found.uri
    return ctx.storage.get_bytes(uri)


def _no_prediction(prediction_id: int) -> Exception:
    return NotFound(f"prediction {prediction_id} not found", field="prediction_id")


def stac_item(p: GeoPrediction, base: str) -> dict[str, Any]:
    """A prediction as a STAC item: the label item reported, its GeoJSON asset served by modelyard,
    linked to its source scene and run."""
    item = {k: v for k, v in p.item.items() if k != "modelyard:label_asset"}
    key = p.item.get("modelyard:label_asset", "labels")
    assets = dict(item.get("assets") or {})
    assets[key] = {
        **assets.get(key, {}),
        "href": f"{base}{API}/predictions/{p.id}/geojson",
        "type": "application/geo+json",
        "roles": ["labels"],
    }
    links = [link for link in item.get("links") or [] if isinstance(link, dict) and link.get("rel") != "self"]
    links += [
        {"rel": "self", "href": f"{base}{API}/predictions/{p.id}", "type": "application/geo+json"},
        {"rel": "source", "href": f"{base}{API}/scenes/{p.scene_id}", "type": "application/json"},
        {"rel": "via", "href": f"{base}{API}/runs/{p.run_id}", "type": "application/json"},
    ]
    properties = {
        **(item.get("properties") or {}),
        "modelyard:model": p.model,
        "modelyard:model_version": p.model_version,
        "modelyard:aoi_id": p.aoi_id,
        "modelyard:run_id": p.run_id,
        "modelyard:summary": p.summary,
    }
    return {**item, "properties": properties, "links": links, "assets": assets}


def list_predictions(
    ctx: AppContext,
    *,
    base: str,
    model: str | None = None,
    aoi_id: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    offset: int = 0,
    limit: int = 100,
) -> dict[str, Any]:
    """Predictions newest first as a STAC ItemCollection, filtered by model, AOI, the scene's time
    (``start`` ≤ t < ``end``) and bbox overlap."""
    where: list[Any] = []
    if model is not None:
        where.append(GeoPrediction.model == model)
    if aoi_id is not None:
        where.append(GeoPrediction.aoi_id == aoi_id)
    if start is not None:
        where.append(GeoPrediction.observed_at >= start)
    if end is not None:
        where.append(GeoPrediction.observed_at < end)
    if bbox is not None:
        where += [
            GeoPrediction.max_lon >= bbox[0],
            GeoPrediction.max_lat >= bbox[1],
            GeoPrediction.min_lon <= bbox[2],
            GeoPrediction.min_lat <= bbox[3],
        ]
    with ctx.uow() as session:
        rows = session.scalars(
            select(GeoPrediction).where(*where).order_by(GeoPrediction.id.desc()).offset(offset).limit(limit)
        ).all()
        features = [stac_item(p, base) for p in rows]
    return {
        "type": "FeatureCollection",
        "features": features,
        "numberReturned": len(features),
        "links": [{"rel": "self", "href": f"{base}{API}/predictions"}],
    }


def get_prediction(ctx: AppContext, prediction_id: int, base: str) -> dict[str, Any]:
    """One prediction as a STAC item."""
    with ctx.uow() as session:
        found = session.get(GeoPrediction, prediction_id)
        if found is None:
            raise _no_prediction(prediction_id)
        return stac_item(found, base)
