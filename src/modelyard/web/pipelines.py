"""Pipeline pages: the list, a pipeline (its DAG drawn, stage queues, events by state a page at a time,
errors grouped by type, a submit form), and an event (each stage's state, timings, logs and output:
images shown, JSON pretty-printed, arrays summarised with their shape and a histogram)."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any, Literal
from urllib.parse import quote

import numpy as np
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from modelyard.pipelines.stages.outputs import decode
from modelyard.web.charts import dag, histogram
from modelyard.web.client import Api, ApiProblem
from modelyard.web.render import PAGE_SIZE, Acting, SignedIn, api, page
from modelyard.web.session import Viewer
from modelyard.web.snapshots import STALE_S, kept_snapshot

router = APIRouter()
EVENT_STATES = ("pending", "running", "complete", "failed", "cancelled")
# Outputs up to this size are shown in the page; bigger ones are linked.
SHOWN_BYTES = 256 * 1024
HEX = re.compile(r"#[0-9a-fA-F]{6}")
MAX_SWATCHES = 24


@router.get("/pipelines", response_class=HTMLResponse)
async def pipelines(request: Request, viewer: SignedIn, offset: int = 0) -> Response:
    """Pipelines by name with their event counts by state, a page at a time."""
    offset = max(offset, 0)
    async with api(request, viewer) as my:
        found = await my.get("/api/v1/pipelines", offset=offset, limit=PAGE_SIZE)
    snapshots = await asyncio.gather(*(kept_snapshot(request, viewer, p["name"]) for p in found["items"]))
    rows = list(zip(found["items"], snapshots, strict=True))
    return page(
        request, "pipelines.html", viewer, rows=rows, total=found["total"], offset=offset, size=PAGE_SIZE
    )


def _picture(pipeline: dict[str, Any], snapshot: dict[str, Any]) -> str:
    stages = {s["name"]: [i for i in s["inputs"]] for s in pipeline["stages"]}
    notes = {}
    for s in snapshot["stages"]:
        busy = s["ready"] + s["running"]
        notes[s["stage"]] = f"{s['done']} done · {s['failed']} failed" + (f" · {busy} busy" if busy else "")
    return dag(stages, notes=notes)


async def _pipeline_page(
    request: Request,
    viewer: Viewer,
    name: str,
    state: str,
    before: str = "",
    after: str = "",
    *,
    status: int = 200,
    **extra: Any,
) -> Response:
    path = f"/api/v1/pipelines/{quote(name)}"
    async with api(request, viewer) as my:
        pipeline, snapshot, events, errors = await asyncio.gather(
            my.get(path),
            kept_snapshot(request, viewer, name),
            # counted once, by the snapshot: a count here would scan the same index again
            my.get(
                f"{path}/events",
                state=state or None,
                before=before,
                after=after,
                limit=PAGE_SIZE,
                count=False,
            ),
            my.get(f"{path}/errors"),
        )
    counts = snapshot["events"]
    return page(
        request,
        "pipeline.html",
        viewer,
        status=status,
        pipeline=pipeline,
        snapshot=snapshot,
        events=events,
        total=counts.get(state, 0) if state else sum(counts.values()),
        errors=errors["groups"],
        picture=_picture(pipeline, snapshot),
        state=state,
        states=EVENT_STATES,
        stale_s=STALE_S,
        **extra,
    )


@router.get("/pipelines/{name}", response_class=HTMLResponse)
async def pipeline(
    request: Request, viewer: SignedIn, name: str, state: str = "", before: str = "", after: str = ""
) -> Response:
    """One pipeline: DAG, stage queues, events (filtered by state, a page at a time through the newer and
    older cursors), errors by type with the newest events each hit, submit form."""
    return await _pipeline_page(request, viewer, name, state, before, after)


def _parse_bulk(text: str) -> list[dict[str, str]]:
    """One event per non-empty line: ``name source`` (or just ``source``, named after its file)."""
    events = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) == 1:
            source = parts[0]
            name = source.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0] or source
        else:
            name, source = parts[0], parts[1]
        events.append({"name": name, "source": source})
    return events


@router.post("/pipelines/{name}/events", response_class=HTMLResponse)
async def submit(
    request: Request,
    viewer: Acting,
    name: str,
    event_name: Annotated[str, Form()] = "",
    source: Annotated[str, Form()] = "",
    bulk: Annotated[str, Form()] = "",
    folder: Annotated[str, Form()] = "",
    pattern: Annotated[str, Form()] = "",
) -> Response:
    """Submit one event (name + source), many (one ``name source`` a line) or one for each file of a
    data-dir folder (matching ``pattern``); the page says how it went."""
    body: dict[str, Any]
    if folder.strip():
        body = {"folder": folder.strip(), "pattern": pattern.strip() or "*"}
    elif bulk.strip():
        body = {"events": _parse_bulk(bulk)}
    else:
        body = {"events": [{"name": event_name.strip(), "source": source.strip()}]}
    request.app.state.snapshots.forget(name)  # the page after it counts the new events
    try:
        async with Api(request.app.state.api_app, viewer.key) as my:
            answer = await my.post(f"/api/v1/pipelines/{quote(name)}/events", json=body)
    except ApiProblem as exc:
        return await _pipeline_page(request, viewer, name, "", status=exc.status, submit_error=exc)
    return await _pipeline_page(request, viewer, name, "", submitted=answer)


def colours(value: Any, found: list[str] | None = None) -> list[str]:
    """The ``#rrggbb`` colours in a JSON value (a palette's), in order, at most ``MAX_SWATCHES``."""
    found = [] if found is None else found
    if isinstance(value, str) and HEX.fullmatch(value) and value not in found:
        found.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            colours(item, found)
    elif isinstance(value, list) and value and not isinstance(value[0], int | float):
        for item in value:
            colours(item, found)
    return found[:MAX_SWATCHES]


async def _output(my: Api, event_id: str, run: dict[str, Any], raw_type: str) -> dict[str, Any]:
    """What the page shows of a stage's output: an image, JSON (with its colours), an array's summary."""
    out = run.get("output")
    if run["state"] != "done" or not out:
        return {}
    link = f"/ui/events/{quote(event_id)}/stages/{quote(run['stage'])}/output"
    if out["kind"] == "image" or (run["stage"] == "raw" and raw_type == "image"):
        return {"image": link, "link": link}
    if (out.get("size") or 0) > SHOWN_BYTES:
        return {"link": link, "too_big": True}
    if out["kind"] == "json":
        value = run.get("result")
        if value is None:
            value = (await my.request("GET", out["url"])).json()
        return {"json": value, "colours": colours(value), "link": link}
    if out["kind"] == "array":
        data = (await my.request("GET", out["url"])).content
        array = np.asarray(decode("array", data))  # .npy, or a TIFF label mask
        summary: dict[str, Any] = {"shape": list(array.shape), "dtype": str(array.dtype)}
        if array.dtype.kind in "biuf" and array.size:
            finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
            if finite.size:
                summary |= {
                    "min": float(finite.min()),
                    "max": float(finite.max()),
                    "mean": float(finite.mean()),
                }
        return {"array": summary, "histogram": histogram(array), "link": link}
    return {"link": link}


@router.get("/events/{event_id}", response_class=HTMLResponse)
async def event(request: Request, viewer: SignedIn, event_id: str) -> Response:
    """One event: every stage's state, attempts, timings, error, logs link and output."""
    async with api(request, viewer) as my:
        found = await my.get(f"/api/v1/events/{quote(event_id)}")
        pipeline = await my.get(f"/api/v1/pipelines/{quote(found['pipeline'])}")
        outputs = await asyncio.gather(
            *(_output(my, event_id, run, pipeline["raw_type"]) for run in found["stages"])
        )
    stages = {s["name"]: s["inputs"] for s in pipeline["stages"]}
    states = {run["stage"]: run["state"] for run in found["stages"]}
    return page(
        request,
        "event.html",
        viewer,
        event=found,
        runs=list(zip(found["stages"], outputs, strict=True)),
        picture=dag(stages, states=states, notes=states),
    )


@router.get("/events/{event_id}/stages/{stage}/output")
async def output(request: Request, viewer: SignedIn, event_id: str, stage: str) -> Response:
    """A stage's stored output as the API serves it (images render in the page)."""
    async with api(request, viewer) as my:
        resp = await my.request("GET", f"/api/v1/events/{quote(event_id)}/stages/{quote(stage)}/output")
    return Response(resp.content, media_type=resp.headers.get("content-type"))


@router.get("/events/{event_id}/stages/{stage}/logs", response_class=HTMLResponse)
async def logs(request: Request, viewer: SignedIn, event_id: str, stage: str) -> Response:
    """What the stage printed and logged for the event."""
    async with api(request, viewer) as my:
        text = (await my.request("GET", f"/api/v1/events/{quote(event_id)}/stages/{quote(stage)}/logs")).text
    return page(request, "logs.html", viewer, event_id=event_id, stage=stage, text=text)


@router.post("/events/{event_id}/{action}")
async def act(
    request: Request, viewer: Acting, event_id: str, action: Literal["rerun", "cancel", "archive", "restore"]
) -> Response:
    """Re-run, cancel, archive or restore an event; back to its page."""
    async with api(request, viewer) as my:
        await my.post(
            f"/api/v1/events/{quote(event_id)}/{action}", **({"json": {}} if action == "rerun" else {})
        )
    return RedirectResponse(f"/ui/events/{quote(event_id)}", status_code=303)


@router.get("/pipelines/{name}/events/{event_name}")
async def event_by_name(request: Request, viewer: SignedIn, name: str, event_name: str) -> Response:
    """An event found by its name in the pipeline: to its page."""
    async with api(request, viewer) as my:
        found = await my.get(f"/api/v1/pipelines/{quote(name)}/events/{quote(event_name)}")
    return RedirectResponse(f"/ui/events/{quote(found['id'])}", status_code=303)
