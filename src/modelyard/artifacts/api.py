"""Artifact routes: ``/api/v1/artifacts``, files that jobs (``uri``), schedules and pipeline events
(``artifact://key``) read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from modelyard.artifacts import service
from modelyard.artifacts.schemas import ArtifactList, ArtifactPublic
from modelyard.deps import Ctx, ReadKey, WriteKey
from modelyard.uploads import receive_upload, upload_openapi

router = APIRouter(prefix="/api/v1/artifacts", tags=["artifacts"])


@router.put(
    "/{key:path}",
    status_code=status.HTTP_201_CREATED,
    response_model=ArtifactPublic,
    openapi_extra=upload_openapi("The file to store under the key"),
)
async def put_artifact(key: str, request: Request, ctx: Ctx, _: WriteKey) -> ArtifactPublic:
    """Store a file under `key` (e.g. `batches/flowers.csv`), replacing what was there: the raw body or a
    multipart `file` part, streamed to the store, at most `MODELYARD_MAX_ARTIFACT_BYTES`. Keys under
    `models/`, `jobs/`, `pipelines/` and `archive/` are modelyard's own and refused."""
    service.writable_key(key)
    length = request.headers.get("content-length")
    upload = await receive_upload(
        request.stream(),
        request.headers.get("content-type", "application/octet-stream"),
        max_bytes=ctx.settings.max_artifact_bytes,
        tmp_dir=ctx.settings.data_dir / "tmp",
        content_length=int(length) if length and length.isdigit() else None,
    )
    try:
        return await run_in_threadpool(service.put, ctx.storage, key, upload.path, upload.sha256)
    finally:
        upload.discard()


@router.get("", response_model=ArtifactList)
def list_artifacts(
    ctx: Ctx,
    _: ReadKey,
    prefix: Annotated[str, Query(description="Only keys starting with this, e.g. `batches/`")] = "",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> ArtifactList:
    """Stored files by key, under a prefix."""
    return service.list_prefix(ctx.storage, prefix, limit)


@router.get(
    "/{key:path}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The file's bytes"}},
)
def get_artifact(key: str, ctx: Ctx, _: ReadKey) -> StreamingResponse:
    """Download a stored file."""
    info, chunks = service.read(ctx.storage, key)
    headers = {"Content-Length": str(info.size)}
    if info.sha256:
        headers["X-Content-SHA256"] = info.sha256
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


@router.delete("/{key:path}", status_code=status.HTTP_204_NO_CONTENT)
def delete_artifact(key: str, ctx: Ctx, _: WriteKey) -> Response:
    """Delete a stored file (not one of modelyard's own)."""
    service.delete(ctx.storage, key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
