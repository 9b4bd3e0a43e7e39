"""Registry routes: ``/api/v1/models``."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from modelyard.bodies import OffLoopJSONRoute
from modelyard.deps import Ctx, ReadKey, WriteKey
from modelyard.errors import BadRequest, ValidationFailed
from modelyard.registry import service
from modelyard.registry.schemas import (
    CommandSpec,
    ModelCreate,
    ModelList,
    ModelPublic,
    ModelUpdate,
    VersionPublic,
)
from modelyard.uploads import receive_upload, upload_openapi

router = APIRouter(prefix="/api/v1/models", tags=["registry"], route_class=OffLoopJSONRoute)

UPLOAD_BODY = upload_openapi(
    "The .onnx file",
    {
        "metadata": {
            "type": "string",
            "description": "JSON object of version metadata",
            "example": '{"max_batch_size": 32}',
        }
    },
)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ModelPublic)
def create_model(body: ModelCreate, ctx: Ctx, _: WriteKey) -> ModelPublic:
    """Register a model name with its description, tags and free-form metadata."""
    with ctx.uow() as session:
        return service.model_public(service.create_model(session=session, data=body))


@router.get("", response_model=ModelList)
def list_models(
    request: Request,
    ctx: Ctx,
    _: ReadKey,
    tag: Annotated[list[str] | None, Query(description="Only models with every one of these tags")] = None,
    q: Annotated[str, Query(description="Part of the name, description or a tag (any case)")] = "",
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ModelList:
    """List models by name, a page at a time; filter by tags, by a search `q` in name, description and
    tags, and by metadata fields, e.g. `?metadata.task=classification`."""
    meta = {
        k.removeprefix("metadata."): v for k, v in request.query_params.items() if k.startswith("metadata.")
    }
    with ctx.uow() as session:
        items, total = service.list_models(
            session=session, tag=tag, metadata=meta, q=q, offset=offset, limit=limit
        )
        return ModelList(items=[service.model_public(m) for m in items], total=total)


@router.get("/{name}", response_model=ModelPublic)
def get_model(name: str, ctx: Ctx, _: ReadKey) -> ModelPublic:
    """One model with all its versions and their signatures."""
    with ctx.uow() as session:
        return service.model_public(service.get_model(session=session, name=name))


@router.patch("/{name}", response_model=ModelPublic)
def update_model(name: str, body: ModelUpdate, ctx: Ctx, _: WriteKey) -> ModelPublic:
    """Change description or tags, and merge metadata (a null value removes a key)."""
    with ctx.uow() as session:
        model = service.model_public(service.update_model(session=session, name=name, data=body))
    ctx.inference.invalidate(name)
    return model


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_model(name: str, ctx: Ctx, _: WriteKey) -> Response:
    """Delete a model, all its versions and their files."""
    with ctx.uow() as session:
        service.delete_model(session=session, storage=ctx.storage, name=name)
    ctx.inference.invalidate(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{name}/versions",
    status_code=status.HTTP_201_CREATED,
    response_model=VersionPublic,
    openapi_extra=UPLOAD_BODY,
)
async def upload_version(
    name: str,
    request: Request,
    ctx: Ctx,
    _: WriteKey,
    create: Annotated[
        bool, Query(description="Register the model too if it does not exist (in the same transaction)")
    ] = False,
    description: Annotated[str, Query(description="Description of a model this upload creates")] = "",
) -> VersionPublic:
    """Upload an ONNX file as the next version (multipart field `file`, or a raw body).

    The file is streamed to disk under the size cap, checked with `onnx.checker` and shape inference,
    its constants measured against `MODELYARD_MAX_MODEL_MATERIALISED_BYTES` (without computing them),
    loaded once by onnxruntime with graph optimisation off, and its signature recorded. A file that is
    not ONNX, truncated, not runnable, too large or that would materialise too much is refused with a
    4xx saying which, and nothing is kept: with `create=true`, not even the model.
    """
    new = _new_model(name, description) if create else None

    def model_exists() -> None:
        with ctx.uow() as session:
            service.get_model(session=session, name=name)

    if new is None:
        await run_in_threadpool(model_exists)
    length = request.headers.get("content-length")
    upload = await receive_upload(
        request.stream(),
        request.headers.get("content-type", "application/octet-stream"),
        max_bytes=ctx.settings.max_upload_bytes,
        tmp_dir=ctx.settings.data_dir / "tmp",
        content_length=int(length) if length and length.isdigit() else None,
    )
    try:
        meta = _parse_metadata(upload.field("metadata"))

        def store() -> VersionPublic:
            with ctx.uow() as session:
                model, version = service.add_version(
                    session=session,
                    storage=ctx.storage,
                    name=name,
                    path=upload.path,
                    sha256=upload.sha256,
                    metadata=meta,
                    create=new,
                    max_materialised_bytes=ctx.settings.max_model_materialised_bytes,
                )
                return service.version_public(model, version)

        result = await run_in_threadpool(store)
    finally:
        upload.discard()
    ctx.inference.invalidate(name)
    return result


@router.post("/{name}/versions/command", status_code=status.HTTP_201_CREATED, response_model=VersionPublic)
def add_command_version(name: str, body: CommandSpec, ctx: Ctx, _: WriteKey) -> VersionPublic:
    """Add the next version of a command model: the arguments (the path of a STAC item is appended as the
    last when it runs), extra environment, a timeout and limits. 409 if the model is not of kind
    `command`."""
    with ctx.uow() as session:
        model, version = service.add_command_version(session=session, name=name, spec=body)
        return service.version_public(model, version)


def _new_model(name: str, description: str) -> ModelCreate:
    try:
        return ModelCreate(name=name, description=description)
    except ValidationError as exc:
        raise ValidationFailed.of_validation(exc.errors()) from exc


def _parse_metadata(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"metadata is not valid JSON: {exc}", field="metadata") from exc
    if not isinstance(value, dict):
        raise BadRequest("metadata must be a JSON object", field="metadata")
    return value


@router.get("/{name}/versions/{version}", response_model=VersionPublic)
def get_version(name: str, version: str, ctx: Ctx, _: ReadKey) -> VersionPublic:
    """One version (a number or `latest`) with its signature."""
    with ctx.uow() as session:
        model, v = service.resolve_version(session=session, name=name, version=version)
        return service.version_public(model, v)


@router.delete("/{name}/versions/{version}", status_code=status.HTTP_204_NO_CONTENT)
def delete_version(name: str, version: str, ctx: Ctx, _: WriteKey) -> Response:
    """Delete one version and its file."""
    with ctx.uow() as session:
        service.delete_version(session=session, storage=ctx.storage, name=name, version=version)
    ctx.inference.invalidate(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
