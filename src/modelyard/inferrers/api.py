"""Built-in inferrers called synchronously: ``/api/v1/inferrers``."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from modelyard.deps import Ctx, PredictKey, ReadKey
from modelyard.errors import BadRequest
from modelyard.inferrers import service
from modelyard.uploads import receive_upload, upload_openapi

router = APIRouter(prefix="/api/v1/inferrers", tags=["inferrers"])
RESERVED = {"url"}

UPLOAD_BODY = upload_openapi("The input: an image, or what the inferrer accepts (`.npy` for an array)")


def _params(request: Request) -> dict[str, Any]:
    """Query parameters other than ``url`` as inferrer parameters (JSON values where they parse)."""
    out: dict[str, Any] = {}
    for key, raw in request.query_params.items():
        if key in RESERVED:
            continue
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


@router.get("")
def list_inferrers(_: ReadKey) -> list[dict[str, Any]]:
    """The built-in inferrers: the data types each accepts (`image`, `array`, `table`, `json`, `bytes`;
    its input is read as the first), what it produces and which parameters it takes."""
    return service.describe()


@router.get("/{name}")
def infer_url(
    name: str,
    request: Request,
    ctx: Ctx,
    _: PredictKey,
    url: Annotated[
        str, Query(description="http(s) URL of the input (public addresses only, unless allowed)")
    ],
) -> dict[str, Any]:
    """Run an inferrer on the input at `url` (an image, or what the inferrer accepts). Other query
    parameters are the inferrer's, e.g. `?url=...&top_k=3` for `palette` or
    `?url=...&model=resnet&resize=224` for `features`."""
    return service.infer_url(ctx, name, url, _params(request))


@router.post("/{name}", openapi_extra=UPLOAD_BODY)
async def infer_upload(name: str, request: Request, ctx: Ctx, _: PredictKey) -> dict[str, Any]:
    """Run an inferrer on an uploaded input (multipart `file`, or the raw body): an image, or what the
    inferrer accepts (`.npy` for an array); parameters as query."""
    params = _params(request)
    await run_in_threadpool(service.check, name, params)
    upload = await receive_upload(
        request.stream(),
        request.headers.get("content-type", "application/octet-stream"),
        max_bytes=ctx.settings.fetch_max_bytes,
        tmp_dir=ctx.settings.data_dir / "tmp",
    )

    def run() -> dict[str, Any]:  # reading, decoding and inferring are all off the event loop
        data = upload.path.read_bytes()
        upload.discard()
        if not data:
            raise BadRequest("the uploaded file is empty", field="file")
        return service.infer(ctx, name, data, params)

    try:
        return await run_in_threadpool(run)
    finally:
        upload.discard()  # also when the request is cancelled before the thread starts
