"""Inferrer pages: the built-in inferrers (what each accepts, produces and takes as parameters), each with
a try-it form that runs it on an uploaded file and shows the output (colours as swatches, JSON
pretty-printed)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from modelyard.web.client import ApiProblem
from modelyard.web.pipelines import colours
from modelyard.web.render import Acting, SignedIn, api, page
from modelyard.web.session import Viewer

router = APIRouter()


async def _inferrers_page(request: Request, viewer: Viewer, *, status: int = 200, **shown: Any) -> Response:
    async with api(request, viewer) as my:
        found = await my.get("/api/v1/inferrers")
    return page(request, "inferrers.html", viewer, status=status, inferrers=found, **shown)


@router.get("/inferrers", response_class=HTMLResponse)
async def inferrers(request: Request, viewer: SignedIn) -> Response:
    """The built-in inferrers, each with a try-it form."""
    return await _inferrers_page(request, viewer)


def _params(text: str) -> dict[str, Any]:
    """The form's parameters: a JSON object, or nothing."""
    if not text.strip():
        return {}
    value = orjson.loads(text)
    if not isinstance(value, dict):
        raise ValueError('the parameters must be a JSON object, such as {"top_k": 3}')
    return value


@router.post("/inferrers/{name}", response_class=HTMLResponse)
async def try_inferrer(
    request: Request,
    viewer: Acting,
    name: str,
    file: Annotated[UploadFile, File()],
    params: Annotated[str, Form()] = "",
) -> Response:
    """Run the inferrer on the uploaded file with the given parameters; show its output."""
    shown: dict[str, Any] = {"tried": name, "params": {name: params}, "file_name": file.filename or "a file"}
    try:
        query = {k: orjson.dumps(v).decode() for k, v in _params(params).items()}
    except (orjson.JSONDecodeError, ValueError) as exc:
        return await _inferrers_page(request, viewer, status=400, error=f"parameters: {exc}", **shown)
    try:
        async with api(request, viewer) as my:
            output = await my.post(
                f"/api/v1/inferrers/{quote(name)}",
                params=query,
                files={"file": (file.filename or "upload", await file.read(), file.content_type)},
            )
    except ApiProblem as exc:
        return await _inferrers_page(request, viewer, status=exc.status, error=exc.detail, **shown)
    return await _inferrers_page(request, viewer, output=output, colours=colours(output), **shown)
