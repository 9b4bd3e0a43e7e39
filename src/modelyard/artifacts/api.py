"""Artifact routes: ``/api/v1/artifacts``, files that jobs (``uri``), schedules and pipeline events
(``artifact://key``) read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from modelyard.artifacts import parts, service
from modelyard.artifacts.schemas import ArtifactList, ArtifactPublic, PartPublic, UploadCreate, UploadPublic
from modelyard.deps import Ctx, ReadKey, WriteKey
from modelyard.uploads import receive_upload, upload_openapi

router = APIRouter(prefix="/api/v1/artifacts", tags=["artifacts"])


# Resumable uploads in parts: declared before the catch-all "/{key:path}" routes, which would match them.
@router.post("/uploads", status_code=status.HTTP_201_CREATED, response_model=UploadPublic)
def start_upload(body: UploadCreate, ctx: Ctx, _: WriteKey) -> UploadPublic:
    """Start a resumable upload of a large file in parts: its key, size, sha256 and part size. PUT each
    part, then POST `complete`; after an interruption, GET the upload to see which parts arrived."""
    return parts.start(ctx.storage, body, ctx.settings.max_artifact_bytes)


@router.get("/uploads/{upload_id}", response_model=UploadPublic)
def get_upload(upload_id: str, ctx: Ctx, _: WriteKey) -> UploadPublic:
    """An upload in progress and the parts that have arrived."""
    return parts.status(ctx.storage, upload_id)


@router.put("/uploads/{upload_id}/parts/{number}", response_model=PartPublic)
async def put_part(
    upload_id: str,
    number: int,
    request: Request,
    ctx: Ctx,
    _: WriteKey,
    content_md5: Annotated[str | None, Header(description="Base64 MD5 of the part's bytes")] = None,
) -> PartPublic:
    """One part (numbered from 1) as the raw body with its `Content-MD5`; a part with the wrong size or
    checksum is refused (400) and not kept. Sending a part again replaces it."""
    length = request.headers.get("content-length")
    upload = await receive_upload(
        request.stream(),
        "application/octet-stream",
        max_bytes=parts.MAX_PART,
        tmp_dir=ctx.settings.data_dir / "tmp",
        content_length=int(length) if length and length.isdigit() else None,
    )
    try:
        return await run_in_threadpool(
            parts.put_part, ctx.storage, upload_id, number, upload.path, content_md5
        )
    finally:
        upload.discard()


@router.post("/uploads/{upload_id}/complete", response_model=ArtifactPublic)
def complete_upload(upload_id: str, ctx: Ctx, _: WriteKey) -> ArtifactPublic:
    """Join the parts into the file at the upload's key, if all arrived and the whole has the declared
    sha256 (409 naming the missing parts; 400, and the upload dropped, on a checksum mismatch)."""
    return parts.complete(ctx.storage, upload_id)


@router.delete("/uploads/{upload_id}", status_code=status.HTTP_204_NO_CONTENT)
def abort_upload(upload_id: str, ctx: Ctx, _: WriteKey) -> Response:
    """Drop an upload and its parts."""
    parts.abort(ctx.storage, upload_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


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
