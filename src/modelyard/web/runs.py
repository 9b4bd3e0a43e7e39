"""Geo run pages: runs (filtered by state and model), one run (its error, logs and the prediction it
reported, with cancel and retry), and the predictions of a model as a list with their label summaries."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

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


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run(request: Request, viewer: SignedIn, run_id: int) -> Response:
    """One run: state, attempts, error, stdout and stderr, and the prediction it reported."""
    async with api(request, viewer) as my:
        found, logs = await asyncio.gather(
            my.get(f"/api/v1/runs/{run_id}"), my.get(f"/api/v1/runs/{run_id}/logs")
        )
        prediction = (
            await my.get(f"/api/v1/predictions/{found['prediction_id']}") if found["prediction_id"] else None
        )
    return page(request, "run.html", viewer, run=found, logs=logs, prediction=prediction, final=FINAL)


@router.post("/runs/{run_id}/{action}")
async def act(request: Request, viewer: Acting, run_id: int, action: Literal["cancel", "retry"]) -> Response:
    """Cancel a run, or queue a failed one again; back to the run's page."""
    async with api(request, viewer) as my:
        await my.post(f"/api/v1/runs/{run_id}/{action}")
    return RedirectResponse(f"/ui/runs/{run_id}", status_code=303)
