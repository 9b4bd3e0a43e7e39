"""Geo run pages: runs (filtered by state and model), one run (its error, logs and the prediction it
reported, with cancel and retry), and the predictions of a model as a list with their label summaries."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from modelyard.web.client import ApiProblem
from modelyard.web.geo import bbox_polygon, outline_map
from modelyard.web.render import PAGE_SIZE, Acting, SignedIn, api, page

router = APIRouter()
STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL = frozenset({"succeeded", "failed", "cancelled"})


@router.get("/runs", response_class=HTMLResponse)
async def runs(
    request: Request, viewer: SignedIn, state: str = "", model: str = "", offset: int = 0
) -> Response:
    """Geo runs, newest first, filtered by state and model, a page at a time; the model's summary."""
    async with api(request, viewer) as my:
        found = await my.get(
            "/api/v1/runs",
            state=state if state in STATES else None,
            model=model or None,
            offset=max(offset, 0),
            limit=PAGE_SIZE,
        )
        summary = await my.get(f"/api/v1/models/{model}/summary") if model else None
    return page(
        request,
        "runs.html",
        viewer,
        runs=found,
        state=state,
        model=model,
        states=STATES,
        size=PAGE_SIZE,
        offset=max(offset, 0),
        summary=summary,
    )


async def _unless_gone(my: Any, path: str) -> Any:
    """The API's answer, or None when what it names was deleted since."""
    try:
        return await my.get(path)
    except ApiProblem as exc:
        if exc.status != 404:
            raise
        return None


def _run_maps(aoi: Any, scene: Any, labels: Any) -> tuple[str, str]:
    """The run's AOI outline, its scene's footprint and the label polygons it reported; and the labels
    alone, framed on them (a ship is a speck on a whole scene)."""
    shapes = [(aoi["geometry"], "aoi", f"AOI {aoi['id']} {aoi['name']}")] if aoi else []
    if scene:
        shapes.append((bbox_polygon(scene["bbox"]), "scene", f"scene {scene['id']} {scene['stac_id']}"))
    drawn = [
        (f["geometry"], "label", str((f.get("properties") or {}).get("class", "label")))
        for f in (labels or {}).get("features", [])
        if f.get("geometry")
    ]
    return outline_map(shapes + drawn, "the run"), outline_map(drawn, "its labels")


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run(request: Request, viewer: SignedIn, run_id: int) -> Response:
    """One run: state, attempts, error, stdout and stderr, and the prediction it reported, drawn on a
    map with its AOI and its scene's footprint."""
    async with api(request, viewer) as my:
        found, logs = await asyncio.gather(
            my.get(f"/api/v1/runs/{run_id}"), my.get(f"/api/v1/runs/{run_id}/logs")
        )
        prediction, labels = None, None
        aoi, scene = await asyncio.gather(
            _unless_gone(my, f"/api/v1/aois/{found['aoi_id']}"),
            _unless_gone(my, f"/api/v1/scenes/{found['scene_id']}"),
        )
        if found["prediction_id"]:
            prediction, labels = await asyncio.gather(
                my.get(f"/api/v1/predictions/{found['prediction_id']}"),
                my.get(f"/api/v1/predictions/{found['prediction_id']}/geojson"),
            )
    return page(
        request,
        "run.html",
        viewer,
        run=found,
        logs=logs,
        prediction=prediction,
        final=FINAL,
        maps=_run_maps(aoi, scene, labels),
    )


@router.post("/runs/{run_id}/{action}")
async def act(request: Request, viewer: Acting, run_id: int, action: Literal["cancel", "retry"]) -> Response:
    """Cancel a run, or queue a failed one again; back to the run's page."""
    async with api(request, viewer) as my:
        await my.post(f"/api/v1/runs/{run_id}/{action}")
    return RedirectResponse(f"/ui/runs/{run_id}", status_code=303)
