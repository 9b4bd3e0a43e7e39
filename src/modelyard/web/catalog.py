"""Catalog pages: the collections, a collection (search by text, filter, colour or "more like this", hits
with thumbnails of image records and their palettes; each producer's current version, re-inference
progress updating in place, switch / cancel / rollback forms), and a record (its inferences per version)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from modelyard.web.client import ApiProblem
from modelyard.web.pipelines import colours
from modelyard.web.render import Acting, SignedIn, api, page
from modelyard.web.session import Viewer

router = APIRouter()
HITS = 24
VECTOR_MIN = 16  # as the catalog: a list of this many numbers is a vector
MAGIC = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF8": "image/gif", b"RIFF": "image/webp"}


def vector_fields(inferred: dict[str, Any]) -> list[str]:
    """The vector fields among a record's inferred values (``embedder``, ``palette.embedding``)."""
    found = []
    for producer, value in inferred.items():
        if _is_vector(value):
            found.append(producer)
        elif isinstance(value, dict):
            found.extend(f"{producer}.{k}" for k, v in value.items() if _is_vector(v))
    return found


def _is_vector(value: Any) -> bool:
    if not isinstance(value, list) or len(value) < VECTOR_MIN:
        return False
    return all(isinstance(x, int | float) for x in value)


def search_body(text: str, colour: str, like: str, field: str, filter_json: str) -> dict[str, Any] | None:
    """The search the form asks for (None when it asks for nothing: the first records are listed)."""
    body: dict[str, Any] = {"limit": HITS}
    if text.strip():
        body["text"] = text.strip()
    if colour.strip():
        body["colour"] = {"colours": {colour.strip(): 1.0}, "k": HITS}
    if like.strip():
        body["vector"] = {"field": field.strip() or "palette.embedding", "record": like.strip(), "k": HITS}
    if filter_json.strip():
        try:
            body["filter"] = json.loads(filter_json)
        except json.JSONDecodeError as exc:
            raise ApiProblem(400, {"detail": f"the filter is not JSON: {exc}", "field": "filter"}) from None
    return body if len(body) > 1 else None


@router.get("/collections", response_class=HTMLResponse)
async def collections(request: Request, viewer: SignedIn) -> Response:
    """Every collection with its record count and bound pipelines."""
    async with api(request, viewer) as my:
        found = await my.get("/api/v1/collections", limit=1000)
    return page(request, "collections.html", viewer, collections=found["items"])


async def _versions(request: Request, viewer: Viewer, name: str) -> list[dict[str, Any]]:
    async with api(request, viewer) as my:
        items: list[dict[str, Any]] = (await my.get(f"/api/v1/collections/{quote(name)}/versions"))["items"]
    return items


async def _collection_page(
    request: Request, viewer: Viewer, name: str, form: dict[str, str], *, status: int = 200, **extra: Any
) -> Response:
    path = f"/api/v1/collections/{quote(name)}"
    problem = None
    async with api(request, viewer) as my:
        collection, versions = await asyncio.gather(my.get(path), my.get(f"{path}/versions"))
        try:
            body = search_body(**form)
            if body is None:
                listed = await my.get(f"{path}/records", limit=HITS)
                result = {"hits": [{"record": r} for r in listed["items"]], "total": listed["total"]}
            else:
                result = await my.post(f"{path}/search", json=body)
        except ApiProblem as exc:
            problem, result = exc, {"hits": [], "total": 0}
    hits = [{**h, "colours": colours(h["record"]["inferred"].get("palette"))[:8]} for h in result["hits"]]
    fields = sorted({f for h in result["hits"] for f in vector_fields(h["record"]["inferred"])})
    return page(
        request,
        "collection.html",
        viewer,
        status=status if problem is None else problem.status,
        collection=collection,
        versions=versions["items"],
        hits=hits,
        total=result["total"],
        form=form,
        fields=fields or ["palette.embedding"],
        problem=problem,
        **extra,
    )


@router.get("/collections/{name}", response_class=HTMLResponse)
async def collection(
    request: Request,
    viewer: SignedIn,
    name: str,
    text: str = "",
    colour: str = "",
    like: str = "",
    field: str = "",
    filter: str = "",
) -> Response:
    """A collection: search form and hits (thumbnails, palettes), producers' versions and re-inferences."""
    form = {"text": text, "colour": colour, "like": like, "field": field, "filter_json": filter}
    return await _collection_page(request, viewer, name, form)


@router.get("/collections/{name}/versions", response_class=HTMLResponse)
async def versions_live(request: Request, viewer: SignedIn, name: str) -> Response:
    """The versions panel alone (the collection page polls it while a re-inference runs)."""
    collection = {"name": name}
    items = await _versions(request, viewer, name)
    return page(request, "_versions.html", viewer, collection=collection, versions=items)


EMPTY_FORM = {"text": "", "colour": "", "like": "", "field": "", "filter_json": ""}


async def _act(request: Request, viewer: Viewer, name: str, path: str, body: Any = None) -> Response:
    """POST to the collection's API ``path``; back to its page, or the page with the API's refusal."""
    try:
        async with api(request, viewer) as my:
            await my.post(f"/api/v1/collections/{quote(name)}{path}", **({"json": body} if body else {}))
    except ApiProblem as exc:
        return await _collection_page(request, viewer, name, EMPTY_FORM, status=exc.status, act_error=exc)
    return RedirectResponse(f"/ui/collections/{quote(name)}", status_code=303)


@router.post("/collections/{name}/switch", response_class=HTMLResponse)
async def switch(
    request: Request,
    viewer: Acting,
    name: str,
    producer: Annotated[str, Form()] = "",
    version: Annotated[str, Form()] = "",
) -> Response:
    """Make a producer's version current (a re-inference starts); the page shows its progress."""
    body = {"producer": producer.strip(), "version": version.strip()}
    return await _act(request, viewer, name, "/versions", body)


@router.post("/collections/{name}/versions/{producer}/rollback", response_class=HTMLResponse)
async def rollback(request: Request, viewer: Acting, name: str, producer: str) -> Response:
    """Make the producer's previous version current again."""
    return await _act(request, viewer, name, f"/versions/{quote(producer)}/rollback")


@router.post("/collections/{name}/reinferences/{job_id}/cancel", response_class=HTMLResponse)
async def cancel(request: Request, viewer: Acting, name: str, job_id: str) -> Response:
    """Cancel a running re-inference."""
    return await _act(request, viewer, name, f"/reinferences/{quote(job_id)}/cancel")


@router.get("/collections/{name}/records/{record_id}", response_class=HTMLResponse)
async def record(request: Request, viewer: SignedIn, name: str, record_id: str) -> Response:
    """A record: its fields, thumbnail, and every inference of every version (current ones marked)."""
    path = f"/api/v1/collections/{quote(name)}/records/{quote(record_id)}"
    async with api(request, viewer) as my:
        found, inferences = await asyncio.gather(my.get(path), my.get(f"{path}/inferences"))
    items = [
        {**i, "colours": colours(i["values"])[:12], "vector": _is_vector(i["values"])}
        for i in inferences["items"]
    ]
    return page(
        request,
        "record.html",
        viewer,
        collection={"name": name},
        record=found,
        inferences=items,
        thumbnail=_event_of(inferences["items"]),
        fields=vector_fields(found["inferred"]),
    )


def _event_of(inferences: list[dict[str, Any]]) -> str | None:
    """An event of the record (its raw stage output is the image), if any inference came from one."""
    return next((i["event_id"] for i in inferences if i.get("event_id")), None)


@router.get("/collections/{name}/records/{record_id}/thumbnail")
async def thumbnail(request: Request, viewer: SignedIn, name: str, record_id: str) -> Response:
    """The record's image as its pipeline event fetched it (404 when no event of it has one)."""
    path = f"/api/v1/collections/{quote(name)}/records/{quote(record_id)}/inferences"
    async with api(request, viewer) as my:
        event_id = _event_of((await my.get(path))["items"])
        if event_id is None:
            return Response(status_code=404)
        resp = await my.request("GET", f"/api/v1/events/{quote(event_id)}/stages/raw/output")
    ctype = resp.headers.get("content-type", "")
    if not ctype.startswith("image/"):  # a file source has no declared type: know it by its first bytes
        ctype = next((t for magic, t in MAGIC.items() if resp.content.startswith(magic)), "")
    if not ctype:
        return Response(status_code=404)
    return Response(resp.content, media_type=ctype, headers={"Cache-Control": "private, max-age=60"})
