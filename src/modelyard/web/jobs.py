"""Job pages (list with filters, a job with live progress, chunk errors, results, cancel and retry) and
the queue page (queues, workers, dead letters with re-submit, schedules)."""

from __future__ import annotations

import asyncio
from typing import Literal
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from modelyard.web.charts import finished_lines
from modelyard.web.render import PAGE_SIZE, Acting, SignedIn, api, page

router = APIRouter()
STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL = frozenset({"succeeded", "failed", "cancelled"})


@router.get("/jobs", response_class=HTMLResponse)
async def jobs(
    request: Request, viewer: SignedIn, state: str = "", model: str = "", offset: int = 0
) -> Response:
    """Jobs, newest first, filtered by state and model, a page at a time."""
    async with api(request, viewer) as my:
        found = await my.get(
            "/api/v1/jobs",
            state=[state] if state else None,
            model=model or None,
            offset=max(offset, 0),
            limit=PAGE_SIZE,
        )
    return page(
        request, "jobs.html", viewer, jobs=found, state=state, model=model, states=STATES, size=PAGE_SIZE
    )


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job(request: Request, viewer: SignedIn, job_id: str) -> Response:
    """One job: live progress, rate and ETA, its chunks with their errors and bad rows, results, actions."""
    async with api(request, viewer) as my:
        found, chunks = await asyncio.gather(
            my.get(f"/api/v1/jobs/{quote(job_id)}"), my.get(f"/api/v1/jobs/{quote(job_id)}/chunks")
        )
    failed = [c for c in chunks["items"] if c.get("error") or c.get("row_errors")]
    return page(request, "job.html", viewer, job=found, chunks=chunks["items"], failed=failed, final=FINAL)


@router.get("/jobs/{job_id}/stream")
async def job_stream(request: Request, viewer: SignedIn, job_id: str) -> StreamingResponse:
    """The API's server-sent events of the job (``queued``, ``started``, ``progress``, a last
    ``finished``; see ``GET /api/v1/jobs/{id}/events``), passed on as they come: the job page's progress
    bar moves with the job's own events, whichever process runs it, and nothing polls."""
    async with api(request, viewer) as my:
        _, body = await my.stream(f"/api/v1/jobs/{quote(job_id)}/events")
    return StreamingResponse(body, media_type="text/event-stream", headers={"Cache-Control": "no-store"})


@router.get("/jobs/{job_id}/results")
async def results(
    request: Request, viewer: SignedIn, job_id: str, format: Literal["csv", "jsonl", "parquet"] = "csv"
) -> Response:
    """Download a succeeded job's results in ``format``, streamed from the API as it writes them."""
    async with api(request, viewer) as my:
        headers, body = await my.stream(f"/api/v1/jobs/{quote(job_id)}/results", format=format)
    return StreamingResponse(
        body,
        media_type=headers.get("content-type"),
        headers={"Content-Disposition": f'attachment; filename="{job_id}.{format}"'},
    )


@router.post("/jobs/{job_id}/{action}")
async def act(request: Request, viewer: Acting, job_id: str, action: Literal["cancel", "retry"]) -> Response:
    """Cancel a job, or retry what did not succeed; back to the job's page."""
    async with api(request, viewer) as my:
        await my.post(f"/api/v1/jobs/{quote(job_id)}/{action}")
    return RedirectResponse(f"/ui/jobs/{quote(job_id)}", status_code=303)


@router.get("/queues", response_class=HTMLResponse)
async def queues(request: Request, viewer: SignedIn, offset: int = 0) -> Response:
    """Queues, workers (heartbeats, current work, who recovered whom), dead letters and schedules."""
    async with api(request, viewer) as my:
        snapshot, history, dead, schedules = await asyncio.gather(
            my.get("/api/v1/queues"),
            my.get("/api/v1/queues/history"),
            my.get("/api/v1/queues/dead-letters", offset=max(offset, 0), limit=PAGE_SIZE),
            my.get("/api/v1/schedules"),
        )
    return page(
        request,
        "queues.html",
        viewer,
        snapshot=snapshot,
        sparks=finished_lines(history),
        dead=dead,
        schedules=schedules["items"],
        offset=offset,
        size=PAGE_SIZE,
    )


@router.post("/queues/dead-letters/{job_id}/{index}/retry")
async def resubmit(request: Request, viewer: Acting, job_id: str, index: int) -> Response:
    """Re-submit a dead chunk; then follow its job."""
    async with api(request, viewer) as my:
        await my.post(f"/api/v1/queues/dead-letters/{quote(job_id)}/{index}/retry")
    return RedirectResponse(f"/ui/jobs/{quote(job_id)}", status_code=303)
