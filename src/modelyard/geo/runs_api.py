"""Geo run routes: ``/api/v1/runs`` (runs, their logs, cancel, and the results callback),
``/api/v1/predictions`` (a STAC ItemCollection) and the summaries of a model and of an AOI."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from modelyard.deps import Ctx, ReadKey, WriteKey
from modelyard.errors import BadRequest, Unauthorized
from modelyard.geo import results, runs, summaries
from modelyard.geo.api import Bbox, Limit, Offset, parse_bbox
from modelyard.geo.dispatch import wake_runs
from modelyard.geo.run_schemas import PredictionPublic, RunList, RunLogs, RunPublic, Summary
from modelyard.uploads import receive_upload, upload_openapi

runs_router = APIRouter(prefix="/api/v1/runs", tags=["geo"])
predictions_router = APIRouter(prefix="/api/v1/predictions", tags=["geo"])
summaries_router = APIRouter(prefix="/api/v1", tags=["geo"])
Start = Annotated[datetime | None, Query(description="From this time (ISO 8601; UTC if no offset)")]
End = Annotated[datetime | None, Query(description="Up to this time, excluded")]
RESULTS_BODY = upload_openapi(
    "The GeoJSON (FeatureCollection) of the label asset",
    {"item": {"type": "string", "description": "The STAC label item (JSON)"}},
)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@runs_router.get("", response_model=RunList)
def list_runs(
    ctx: Ctx,
    _: ReadKey,
    model: str | None = None,
    aoi: Annotated[int | None, Query(description="AOI id")] = None,
    scene: Annotated[int | None, Query(description="Scene id")] = None,
    state: Annotated[str | None, Query(pattern="^(queued|running|succeeded|failed|cancelled)$")] = None,
    offset: Offset = 0,
    limit: Limit = 100,
) -> RunList:
    """Runs, newest first, filtered by model, AOI, scene and state."""
    return runs.list_runs(
        ctx, model=model, aoi_id=aoi, scene_id=scene, state=state, offset=offset, limit=limit
    )


@runs_router.get("/{run_id}", response_model=RunPublic)
def get_run(run_id: int, ctx: Ctx, _: ReadKey) -> RunPublic:
    """One run: its state, attempts, why it failed, and the prediction it reported."""
    return runs.get_run(ctx, run_id)


@runs_router.get("/{run_id}/logs", response_model=RunLogs)
def run_logs(run_id: int, ctx: Ctx, _: ReadKey) -> RunLogs:
    """What the run's command wrote to stdout and stderr (its last attempt; while it runs, stored every
    couple of seconds)."""
    return runs.run_logs(ctx, run_id)


@runs_router.post("/{run_id}/cancel", response_model=RunPublic)
def cancel_run(run_id: int, ctx: Ctx, _: WriteKey) -> RunPublic:
    """Cancel a queued or running run (a running command is killed with what it started); `409` if it
    has already ended."""
    return runs.cancel_run(ctx, run_id)


@runs_router.post("/{run_id}/retry", response_model=RunPublic)
def retry_run(run_id: int, ctx: Ctx, _: WriteKey) -> RunPublic:
    """Queue a failed or cancelled run again; `409` if it is queued, running or succeeded."""
    found = runs.retry_run(ctx, run_id)
    wake_runs(ctx)
    return found


@runs_router.post(
    "/{run_id}/results",
    status_code=status.HTTP_201_CREATED,
    response_model=PredictionPublic,
    openapi_extra=RESULTS_BODY,
)
async def report_results(
    run_id: int,
    request: Request,
    ctx: Ctx,
    authorization: Annotated[str | None, Header(description="Bearer <the run's token>")] = None,
) -> PredictionPublic:
    """The run's callback (its `MODELYARD_CALLBACK_URL`), authorised by its single-use token
    (`Authorization: Bearer $MODELYARD_RUN_TOKEN`), not an API key. The body: a STAC Item with the label
    extension, either multipart (part `item`: the item; part `file`: its GeoJSON) or the item alone as
    JSON whose GeoJSON asset's `href` is fetched (bounded; private addresses refused unless allowed).
    A wrong token is `401`, a used one `409`, an expired one `410`; an invalid item or GeoJSON `422`
    listing each problem. Nothing is stored unless all of it is accepted."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send the run's token: Authorization: Bearer $MODELYARD_RUN_TOKEN")
    await run_in_threadpool(results.check_token, ctx, run_id, token.strip())
    length = request.headers.get("content-length")
    upload = await receive_upload(
        request.stream(),
        request.headers.get("content-type", "application/json"),
        max_bytes=ctx.settings.geo_result_max_bytes,
        tmp_dir=ctx.settings.data_dir / "tmp",
        content_length=int(length) if length and length.isdigit() else None,
    )
    try:
        body = upload.path.read_bytes()
        item = upload.field("item")
        if item is not None:
            item_data, inline = item.encode(), body
        elif request.headers.get("content-type", "").startswith("multipart/"):
            raise BadRequest("a multipart report needs the label item in part 'item'", field="item")
        else:  # a raw body: the item itself
            item_data, inline = body, None

        def store() -> PredictionPublic:
            return results.report(ctx, run_id, token.strip(), item_data, inline)

        return await run_in_threadpool(store)
    finally:
        upload.discard()


@predictions_router.get("")
def list_predictions(
    request: Request,
    ctx: Ctx,
    _: ReadKey,
    model: str | None = None,
    aoi: Annotated[int | None, Query(description="AOI id")] = None,
    start: Start = None,
    end: End = None,
    bbox: Bbox = None,
    offset: Offset = 0,
    limit: Limit = 100,
) -> Response:
    """Predictions, newest first, as a STAC ItemCollection: each item the label item a run reported, its
    GeoJSON asset served here, linked to its source scene (`rel: source`) and run (`rel: via`). Filters:
    model, AOI, the scene's time (`start` ≤ t < `end`), bbox overlap."""
    collection = results.list_predictions(
        ctx,
        base=_base(request),
        model=model,
        aoi_id=aoi,
        start=start,
        end=end,
        bbox=parse_bbox(bbox),
        offset=offset,
        limit=limit,
    )
    return _geojson(collection)


def _geojson(doc: dict[str, Any]) -> Response:
    return Response(orjson.dumps(doc), media_type="application/geo+json")


@predictions_router.get("/{prediction_id}")
def get_prediction(prediction_id: int, request: Request, ctx: Ctx, _: ReadKey) -> Response:
    """One prediction as a STAC item."""
    return _geojson(results.get_prediction(ctx, prediction_id, _base(request)))


@predictions_router.get("/{prediction_id}/geojson")
def prediction_geojson(prediction_id: int, ctx: Ctx, _: ReadKey) -> Response:
    """The GeoJSON a run reported, as stored."""
    return Response(results.prediction_geojson(ctx, prediction_id), media_type="application/geo+json")


@summaries_router.get("/models/{name}/summary", response_model=Summary)
def model_summary(name: str, ctx: Ctx, _: ReadKey, start: Start = None, end: End = None) -> Summary:
    """What a model's runs saw and found over a time range (default: the last 30 days; at most a
    year): runs by state, scenes seen and matched, AOI area covered, labelled features per class and
    labelled area (m², geodesic), in total and per UTC day."""
    return summaries.model_summary(ctx, name, start, end)


@summaries_router.get("/aois/{aoi_id}/summary", response_model=Summary)
def aoi_summary(aoi_id: int, ctx: Ctx, _: ReadKey, start: Start = None, end: End = None) -> Summary:
    """The same as a model's summary, for one AOI (scenes seen: those overlapping its bbox)."""
    return summaries.aoi_summary(ctx, aoi_id, start, end)
