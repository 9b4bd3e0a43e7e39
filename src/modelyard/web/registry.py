"""Model pages: the list with search, a model with its versions, signature, metadata and prediction
count, a try-it form, and uploading a new version (the browser shows the upload's progress)."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from modelyard.errors import ModelyardError
from modelyard.web.client import Api, ApiProblem
from modelyard.web.render import PAGE_SIZE, Acting, Scripted, SignedIn, api, page
from modelyard.web.session import Viewer
from modelyard.web.tryit import image_input_name, image_inputs

router = APIRouter()


@router.get("/models", response_class=HTMLResponse)
async def models(request: Request, viewer: SignedIn, q: str = "", tag: str = "", offset: int = 0) -> Response:
    """Registered models by name, a page at a time; ``q`` matches name, description and tags, ``tag``
    filters by one tag."""
    async with api(request, viewer) as my:
        found = await my.get(
            "/api/v1/models",
            tag=[tag] if tag else None,
            q=q.strip() or None,
            offset=max(offset, 0),
            limit=PAGE_SIZE,
        )
    return page(
        request,
        "models.html",
        viewer,
        items=found["items"],
        total=found["total"],
        q=q,
        tag=tag,
        offset=max(offset, 0),
        size=PAGE_SIZE,
    )


def _predictions(metrics_text: str, name: str) -> dict[str, float]:
    """Prediction counts of model ``name`` by outcome, read from the Prometheus text."""
    out: dict[str, float] = {}
    pattern = re.compile(r"^modelyard_predictions_total\{([^}]*)\}\s+([0-9.e+]+)$")
    for line in metrics_text.splitlines():
        found = pattern.match(line)
        if not found:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1)))
        if labels.get("model") == name:
            key = labels.get("transport") or "all"
            out[key] = out.get(key, 0.0) + float(found.group(2))
    return out


async def _model_page(
    request: Request, viewer: Viewer, name: str, *, status: int = 200, **extra: Any
) -> Response:
    async with api(request, viewer) as my:
        model = await my.get(f"/api/v1/models/{quote(name)}")
        metrics = (await my.request("GET", "/metrics")).text
    example = _example_rows(model)
    latest = (model.get("versions") or [{}])[-1]
    return page(
        request,
        "model.html",
        viewer,
        status=status,
        model=model,
        predictions=_predictions(metrics, name),
        example=extra.pop("rows", None) or example,
        takes_image=image_input_name(latest.get("signature")) is not None,
        **extra,
    )


def _example_rows(model: dict[str, Any]) -> str:
    """A row of zeros shaped like the latest version's first input, as a starting point for try-it."""
    versions = model.get("versions") or []
    if not versions:
        return "[[0.0]]"
    inputs = (versions[-1].get("signature") or {}).get("inputs") or []
    if not inputs:
        return "[[0.0]]"
    shape = inputs[0].get("shape") or []
    width = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else 1
    return orjson.dumps([[0.0] * width]).decode()


@router.get("/models/{name}", response_class=HTMLResponse)
async def model(request: Request, viewer: SignedIn, name: str) -> Response:
    """One model: versions with signatures, metadata, predictions served, try-it and upload forms."""
    return await _model_page(request, viewer, name)


@router.post("/models/{name}/predict", response_class=HTMLResponse)
async def try_it(request: Request, viewer: Acting, name: str, rows: Annotated[str, Form()]) -> Response:
    """Predict on the pasted rows (a JSON list of rows, or ``{"rows": ...}``) and show the outputs."""
    try:
        body = orjson.loads(rows)
    except orjson.JSONDecodeError as exc:
        return await _model_page(request, viewer, name, status=400, rows=rows, error=f"not JSON: {exc}")
    payload = body if isinstance(body, dict) else {"rows": body}
    return await _answer(request, viewer, name, payload, rows=rows)


async def _answer(request: Request, viewer: Viewer, name: str, payload: Any, **shown: Any) -> Response:
    """The model's page with the prediction on ``payload``, or with the API's problem with it."""
    try:
        async with Api(request.app.state.api_app, viewer.key) as my:
            answer = await my.post(f"/api/v1/models/{quote(name)}/predict", json=payload)
    except ApiProblem as exc:
        return await _model_page(request, viewer, name, status=exc.status, error=exc.detail, **shown)
    return await _model_page(request, viewer, name, answer=answer, **shown)


@router.post("/models/{name}/predict-image", response_class=HTMLResponse)
async def try_image(
    request: Request, viewer: Acting, name: str, image: Annotated[UploadFile, File()]
) -> Response:
    """Predict on an uploaded image: resized and normalised for the latest version's image input (as its
    metadata's ``preprocess`` says), and show the outputs."""
    async with api(request, viewer) as my:
        model = await my.get(f"/api/v1/models/{quote(name)}")
    latest = (model.get("versions") or [{}])[-1]
    shown = {"image_name": image.filename or "the image"}
    try:
        metadata = (model.get("metadata") or {}) | (latest.get("metadata") or {})
        payload = image_inputs(await image.read(), latest.get("signature") or {}, metadata)
    except ModelyardError as exc:
        return await _model_page(request, viewer, name, status=exc.status, error=exc.detail, **shown)
    return await _answer(request, viewer, name, payload, **shown)


@router.post("/models/{name}/versions")
async def upload(request: Request, viewer: Scripted, name: str) -> Response:
    """Upload a new version: the browser's multipart body is passed to the API as it streams in."""
    try:
        async with api(request, viewer) as my:
            version = await my.post(
                f"/api/v1/models/{quote(name)}/versions",
                content=request.stream(),
                headers={"Content-Type": request.headers.get("content-type", "")},
            )
    except ApiProblem as exc:  # the page script shows the problem's detail
        return Response(
            orjson.dumps(exc.problem), media_type="application/problem+json", status_code=exc.status
        )
    return Response(orjson.dumps(version), media_type="application/json", status_code=201)
