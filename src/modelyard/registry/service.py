"""Registry logic: create, list, update and delete models; upload and resolve versions."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from modelyard.durable import log
from modelyard.errors import AlreadyExists, ModelNotFound, VersionNotFound, WrongModelKind
from modelyard.registry.inspect import inspect_model
from modelyard.registry.models import ModelVersion, RegisteredModel
from modelyard.registry.schemas import (
    CommandSpec,
    ModelCreate,
    ModelPublic,
    ModelUpdate,
    Signature,
    VersionPublic,
)
from modelyard.storage import Storage

LATEST = "latest"
MAX_MATERIALISED_BYTES = 256 * 1024 * 1024
"""The default of the ``max_model_materialised_bytes`` setting, for callers without settings."""


def version_public(model: RegisteredModel, v: ModelVersion) -> VersionPublic:
    """The wire form of a version."""
    return VersionPublic(
        model=model.name,
        version=v.version,
        size=v.size,
        sha256=v.sha256,
        signature=Signature.model_validate(v.signature),
        command=CommandSpec.model_validate(v.command) if v.command is not None else None,
        metadata=v.meta,
        created_at=v.created_at,
    )


def model_public(model: RegisteredModel) -> ModelPublic:
    """The wire form of a model with its versions."""
    versions = [version_public(model, v) for v in model.versions]
    return ModelPublic(
        name=model.name,
        kind=model.kind,
        description=model.description,
        tags=list(model.tags),
        metadata=dict(model.meta),
        created_at=model.created_at,
        updated_at=model.updated_at,
        latest_version=versions[-1].version if versions else None,
        versions=versions,
    )


def create_model(*, session: Session, data: ModelCreate) -> RegisteredModel:
    """Register a new model name; ``AlreadyExists`` if taken."""
    if session.scalar(select(RegisteredModel.id).where(RegisteredModel.name == data.name)):
        raise AlreadyExists(f"model {data.name!r} already exists", field="name")
    model = RegisteredModel(
        name=data.name, kind=data.kind, description=data.description, tags=data.tags, meta=data.metadata
    )
    session.add(model)
    try:
        session.flush()
    except IntegrityError as exc:
        raise AlreadyExists(f"model {data.name!r} already exists", field="name") from exc
    if data.command is not None:
        add_command_version(session=session, name=model.name, spec=data.command)
    return model


def add_command_version(
    *, session: Session, name: str, spec: CommandSpec, metadata: dict[str, Any] | None = None
) -> tuple[RegisteredModel, ModelVersion]:
    """Record ``spec`` as the next version of command model ``name`` (no file: its sha256 is the spec's)."""
    model = get_model(session=session, name=name)
    if model.kind != "command":
        raise WrongModelKind(name, model.kind, "command", "a command version")
    document = spec.model_dump(mode="json")
    digest = hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()
    number = _next_number(session, model)
    version = ModelVersion(
        model_id=model.id,
        version=number,
        artifact_key="",
        size=0,
        sha256=digest,
        signature={"inputs": [], "outputs": []},
        command=document,
        meta=metadata or {},
    )
    session.add(version)
    session.flush()
    data = {"model": model.name, "version": number, "sha256": digest, "size": 0}
    log.append(session, "registry.version.created", data, model.name)
    session.refresh(model)
    return model, version


def _next_number(session: Session, model: RegisteredModel) -> int:
    found = session.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model.id))
    return (found or 0) + 1


def require_kind(model: RegisteredModel, kind: str, doing: str) -> None:
    """``WrongModelKind`` unless ``model`` is of ``kind`` (``doing`` says what needed it)."""
    if model.kind != kind:
        raise WrongModelKind(model.name, model.kind, kind, doing)


def get_model(*, session: Session, name: str) -> RegisteredModel:
    """The model named ``name`` with its versions, or ``ModelNotFound``."""
    model = session.scalar(
        select(RegisteredModel)
        .where(RegisteredModel.name == name)
        .options(selectinload(RegisteredModel.versions))
    )
    if model is None:
        raise ModelNotFound(name)
    return model


def _matches(model: RegisteredModel, tag: list[str], meta: dict[str, str], needle: str) -> bool:
    if any(t not in model.tags for t in tag):
        return False
    if needle and not (
        needle in model.name.lower()
        or needle in (model.description or "").lower()
        or any(needle in t.lower() for t in model.tags)
    ):
        return False
    for key, want in meta.items():
        value: Any = model.meta
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None or (str(value).lower() if isinstance(value, bool) else str(value)) != want:
            return False
    return True


def list_models(
    *,
    session: Session,
    tag: list[str] | None = None,
    metadata: dict[str, str] | None = None,
    q: str = "",
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[RegisteredModel], int]:
    """Models ordered by name, filtered by tags (all must match), metadata fields (dotted paths) and ``q``
    (a part of the name, description or a tag, any case)."""
    rows = session.scalars(
        select(RegisteredModel).options(selectinload(RegisteredModel.versions)).order_by(RegisteredModel.name)
    ).all()
    needle = q.strip().lower()
    hits = [m for m in rows if _matches(m, tag or [], metadata or {}, needle)]
    return hits[offset : offset + limit], len(hits)


def update_model(*, session: Session, name: str, data: ModelUpdate) -> RegisteredModel:
    """Change description/tags; merge metadata (a null value deletes that key)."""
    model = get_model(session=session, name=name)
    if data.description is not None:
        model.description = data.description
    if data.tags is not None:
        model.tags = data.tags
    if data.metadata is not None:
        merged = dict(model.meta)
        for key, value in data.metadata.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        model.meta = merged
    session.flush()
    if data.metadata is not None:
        log.append(
            session, "registry.metadata.changed", {"model": model.name, "metadata": merged}, model.name
        )
    return model


def delete_model(*, session: Session, storage: Storage, name: str) -> None:
    """Delete a model, its versions and their artifacts."""
    model = get_model(session=session, name=name)
    keys = [v.artifact_key for v in model.versions]
    session.delete(model)
    session.flush()
    for key in keys:
        storage.delete(key)


def resolve_version(
    *, session: Session, name: str, version: int | str = LATEST
) -> tuple[RegisteredModel, ModelVersion]:
    """The model and the asked version (``latest`` = highest number)."""
    model = get_model(session=session, name=name)
    if not model.versions:
        raise VersionNotFound(name, version)
    if version == LATEST:
        return model, model.versions[-1]
    try:
        number = int(version)
    except ValueError as exc:
        raise VersionNotFound(name, version) from exc
    for v in model.versions:
        if v.version == number:
            return model, v
    raise VersionNotFound(name, version)


def add_version(
    *,
    session: Session,
    storage: Storage,
    name: str,
    path: Path,
    sha256: str,
    metadata: dict[str, Any] | None = None,
    create: ModelCreate | None = None,
    max_materialised_bytes: int = MAX_MATERIALISED_BYTES,
) -> tuple[RegisteredModel, ModelVersion]:
    """Check the file, store it, and record a new version; nothing is left behind on any failure.

    With ``create``, a model that does not exist yet is registered in the same transaction, so a
    refused file leaves no model behind either.
    """
    model = get_model(session=session, name=name) if create is None else None
    if model is not None:
        require_kind(model, "onnx", "an ONNX upload")
    signature = inspect_model(path, max_materialised_bytes=max_materialised_bytes)
    if model is None:
        model = _get_or_create(session=session, data=create or ModelCreate(name=name))
        require_kind(model, "onnx", "an ONNX upload")
    number = _next_number(session, model)
    key = f"models/{model.name}/{number}/{sha256[:16]}.onnx"
    info = storage.put_file(key, path)
    try:
        version = ModelVersion(
            model_id=model.id,
            version=number,
            artifact_key=key,
            size=info.size,
            sha256=sha256,
            signature=signature,
            meta=metadata or {},
        )
        session.add(version)
        session.flush()
        data = {"model": model.name, "version": number, "sha256": sha256, "size": info.size}
        log.append(session, "registry.version.created", data, model.name)
    except BaseException:
        storage.delete(key)
        raise
    session.refresh(model)
    return model, version


def _get_or_create(*, session: Session, data: ModelCreate) -> RegisteredModel:
    found = session.scalar(select(RegisteredModel).where(RegisteredModel.name == data.name))
    return found if found is not None else create_model(session=session, data=data)


def delete_version(*, session: Session, storage: Storage, name: str, version: int | str) -> None:
    """Delete one version and its artifact."""
    _, v = resolve_version(session=session, name=name, version=version)
    key = v.artifact_key
    session.delete(v)
    session.flush()
    storage.delete(key)
