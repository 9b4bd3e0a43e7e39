"""Geo routes: ``/api/v1/aois`` (areas of interest) and ``/api/v1/scenes`` (STAC imagery in)."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response, status

from modelyard.bodies import OffLoopJSONRoute
from modelyard.deps import Ctx, ReadKey, WriteKey
from modelyard.errors import BadRequest
from modelyard.geo import aois, scenes
from modelyard.geo.schemas import (
    AoiCreate,
    AoiList,
    AoiPublic,
    AoiUpdate,
    SceneList,
    ScenePublic,
    ScenesPosted,
)

aois_router = APIRouter(prefix="/api/v1/aois", tags=["geo"])
scenes_router = APIRouter(prefix="/api/v1/scenes", tags=["geo"], route_class=OffLoopJSONRoute)
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]
Bbox = Annotated[
    str | None, Query(description="min_lon,min_lat,max_lon,max_lat: those whose bbox overlaps it")
]
ITEM_EXAMPLE: dict[str, Any] = {
    "type": "Feature",
    "stac_version": "1.0.0",
    "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
    "id": "S2B_31TFJ_20260601",
    "geometry": {"type": "Polygon", "coordinates": [[[5, 45], [6, 45], [6, 46], [5, 46], [5, 45]]]},
    "bbox": [5, 45, 6, 46],
    "properties": {
        "datetime": "2026-06-01T10:30:00Z",
        "gsd": 10,
        "eo:bands": [{"name": "B04", "common_name": "red", "center_wavelength": 0.665}],
    },
    "links": [],
    "assets": {"B04": {"href": "https://example.com/B04.tif", "type": "image/tiff"}},
}


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    """A ``bbox`` query parameter as four numbers; 400 naming it when it is not."""
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise BadRequest(f"bbox {text[:100]!r} is not min_lon,min_lat,max_lon,max_lat", field="bbox")
    if values[0] > values[2] or values[1] > values[3]:
        raise BadRequest(f"bbox {text[:100]!r} has a minimum over its maximum", field="bbox")
    return values[0], values[1], values[2], values[3]


@aois_router.post("", response_model=AoiPublic, status_code=status.HTTP_201_CREATED)
def create_aoi(data: AoiCreate, ctx: Ctx, _: WriteKey) -> AoiPublic:
    """Create an area of interest. The geometry is repaired where that is unambiguous (an open ring,
    repeated points, the wrong winding) and split at the antimeridian; otherwise `422` names the problem
    and where (a self-intersection at lon,lat). `422` too for a model that is not registered."""
    return aois.create_aoi(ctx, data)


@aois_router.get("", response_model=AoiList)
def list_aois(
    ctx: Ctx,
    _: ReadKey,
    bbox: Bbox = None,
    model: str | None = None,
    tag: str | None = None,
    active: bool | None = None,
    offset: Offset = 0,
    limit: Limit = 100,
) -> AoiList:
    """AOIs by id, filtered by bbox overlap, model, tag and active flag."""
    return aois.list_aois(
        ctx, bbox=parse_bbox(bbox), model=model, tag=tag, active=active, offset=offset, limit=limit
    )


@aois_router.get("/{aoi_id}", response_model=AoiPublic)
def get_aoi(aoi_id: int, ctx: Ctx, _: ReadKey) -> AoiPublic:
    """One AOI."""
    return aois.get_aoi(ctx, aoi_id)


@aois_router.patch("/{aoi_id}", response_model=AoiPublic)
def update_aoi(aoi_id: int, data: AoiUpdate, ctx: Ctx, _: WriteKey) -> AoiPublic:
    """Change an AOI's fields (those given); its revision goes up when anything changed."""
    return aois.update_aoi(ctx, aoi_id, data)


@aois_router.delete("/{aoi_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_aoi(aoi_id: int, ctx: Ctx, _: WriteKey) -> Response:
    """Delete an AOI; `409` when runs refer to it (set `active` to false instead)."""
    aois.delete_aoi(ctx, aoi_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@scenes_router.post("", response_model=ScenesPosted, response_model_exclude_none=True)
def post_scenes(
    ctx: Ctx,
    _: WriteKey,
    response: Response,
    body: Annotated[dict[str, Any], Body(examples=[ITEM_EXAMPLE, {"url": "https://example.com/item.json"}])],
    explain: Annotated[bool, Query(description="Say, per AOI considered, why it matched or not")] = False,
) -> ScenesPosted:
    """Post a STAC Item, an ItemCollection (at most `MODELYARD_GEO_ITEM_COLLECTION_MAX` items, else
    `413`), or `{"url": ...}` to fetch one from (bounded; private addresses refused). Items are validated
    against the STAC core, eo, projection and label schemas shipped in modelyard (a declared extension
    not shipped is listed in `unvalidated_extensions`, never fetched); any invalid item rejects the post
    with a `422` listing each problem's JSON path and rule, storing nothing. Each scene is matched to the
    active AOIs and each match queues one run (never a second for the same model, AOI and scene).
    `201` when a new scene was stored, `200` when all were known."""
    posted = scenes.post_scenes(ctx, body, explain=explain)
    response.status_code = status.HTTP_201_CREATED if posted.new_scenes else status.HTTP_200_OK
    return posted


@scenes_router.get("", response_model=SceneList, response_model_exclude_none=True)
def list_scenes(
    ctx: Ctx,
    _: ReadKey,
    collection: str | None = None,
    bbox: Bbox = None,
    offset: Offset = 0,
    limit: Limit = 100,
) -> SceneList:
    """Scenes received, newest first, filtered by collection and bbox overlap."""
    return scenes.list_scenes(ctx, collection=collection, bbox=parse_bbox(bbox), offset=offset, limit=limit)


@scenes_router.get("/{scene_id}", response_model=ScenePublic)
def get_scene(scene_id: int, ctx: Ctx, _: ReadKey) -> ScenePublic:
    """One scene: what was read from it, and the item as received."""
    return scenes.get_scene(ctx, scene_id)
