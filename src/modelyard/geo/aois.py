"""Areas of interest: create, list, read, change and delete them. Every write normalises the geometry
(``shapes``), bumps the AOI revision and keeps the spatial index in step, in one transaction."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import ColumnElement, Text, cast, func, select
from sqlalchemy.orm import Session

from modelyard.context import AppContext
from modelyard.db import aware, utcnow
from modelyard.errors import AoiNotFound, Conflict, ValidationFailed
from modelyard.geo import spatial
from modelyard.geo.models import Aoi, GeoRun
from modelyard.geo.schemas import AoiCreate, AoiList, AoiPublic, AoiUpdate
from modelyard.geo.shapes import Footprint, ShapeError, footprint
from modelyard.registry.models import RegisteredModel


def aoi_public(row: Aoi) -> AoiPublic:
    """The wire form of an AOI."""
    return AoiPublic(
        id=row.id,
        name=row.name,
        geometry=row.geometry,
        bbox=[row.min_lon, row.min_lat, row.max_lon, row.max_lat],
        target_resolution=row.target_resolution,
        wavelengths=row.wavelengths,
        model=row.model,
        tags=row.tags,
        active=row.active,
        revision=row.revision,
        created_at=aware(row.created_at),
        updated_at=aware(row.updated_at),
    )


def _footprint(geometry: dict[str, Any]) -> Footprint:
    try:
        return footprint(geometry, ["geometry"])
    except ShapeError as exc:
        problems = [p.public() for p in exc.problems]
        first = exc.problems[0]
        raise ValidationFailed(f"{first.path}: {first.detail}", errors=problems, field="geometry") from None


def _require_model(session: Session, name: str) -> None:
    if session.scalar(select(RegisteredModel.name).where(RegisteredModel.name == name)) is None:
        detail = f"model {name!r} is not registered"
        raise ValidationFailed(
            detail, errors=[{"path": "$.model", "rule": "registered", "detail": detail}], field="model"
        )


def _place(row: Aoi, shape: Footprint) -> None:
    row.geometry = shape.geojson
    row.min_lon, row.min_lat, row.max_lon, row.max_lat = shape.bbox


def _index(ctx: AppContext) -> spatial.SpatialIndex:
    """The spatial index, chosen before an AOI write's transaction opens (making PostGIS's table locks
    ``aois``, which that transaction writes)."""
    return spatial.index(ctx.db, ctx.settings.geo_spatial_index)


def _written(index: spatial.SpatialIndex, session: Session, row: Aoi, deleted: bool = False) -> None:
    spatial.bump(session)
    index.changed(session, row.id, None if deleted else row.geometry)


def create_aoi(ctx: AppContext, data: AoiCreate) -> AoiPublic:
    """A new AOI; 422 naming the problem when its geometry or model is not acceptable."""
    shape = _footprint(data.geometry)
    index = _index(ctx)
    with ctx.uow() as session:
        _require_model(session, data.model)
        now = utcnow()
        row = Aoi(
            name=data.name,
            target_resolution=data.target_resolution,
            wavelengths=sorted(set(data.wavelengths)),
            model=data.model,
            tags=list(dict.fromkeys(data.tags)),
            active=data.active,
            created_at=now,
            updated_at=now,
            revision=1,
        )
        _place(row, shape)
        session.add(row)
        session.flush()
        _written(index, session, row)
        return aoi_public(row)


def _get(session: Session, aoi_id: int) -> Aoi:
    row = session.get(Aoi, aoi_id)
    if row is None:
        raise AoiNotFound(aoi_id)
    return row


def get_aoi(ctx: AppContext, aoi_id: int) -> AoiPublic:
    """One AOI."""
    with ctx.uow() as session:
        return aoi_public(_get(session, aoi_id))


def update_aoi(ctx: AppContext, aoi_id: int, data: AoiUpdate) -> AoiPublic:
    """Change the fields given; the revision goes up by one when anything changed."""
    shape = _footprint(data.geometry) if data.geometry is not None else None
    index = _index(ctx)
    with ctx.uow() as session:
        row = _get(session, aoi_id)
        if data.model is not None and data.model != row.model:
            _require_model(session, data.model)
        before = aoi_public(row).model_dump()
        for key in ("name", "target_resolution", "model", "active"):
            value = getattr(data, key)
            if value is not None:
                setattr(row, key, value)
        if data.wavelengths is not None:
            row.wavelengths = sorted(set(data.wavelengths))
        if data.tags is not None:
            row.tags = list(dict.fromkeys(data.tags))
        if shape is not None:
            _place(row, shape)
        if aoi_public(row).model_dump() != before:
            row.revision += 1
            row.updated_at = utcnow()
            session.flush()
            _written(index, session, row)
        return aoi_public(row)


def delete_aoi(ctx: AppContext, aoi_id: int) -> None:
    """Delete an AOI that has no runs; one with runs is kept (409): deactivate it instead."""
    index = _index(ctx)
    with ctx.uow() as session:
        row = _get(session, aoi_id)
        runs = session.scalar(select(func.count()).select_from(GeoRun).where(GeoRun.aoi_id == aoi_id)) or 0
        if runs:
            raise Conflict(
                f"AOI {aoi_id} has {runs} run(s), which keep it; set active to false to stop new matches",
                field="id",
            )
        _written(index, session, row, deleted=True)
        session.delete(row)


def list_aois(
    ctx: AppContext,
    *,
    bbox: tuple[float, float, float, float] | None = None,
    model: str | None = None,
    tag: str | None = None,
    active: bool | None = None,
    offset: int = 0,
    limit: int = 100,
) -> AoiList:
    """AOIs by id: those whose bbox overlaps ``bbox``, feeding ``model``, tagged ``tag``, (in)active."""
    where: list[ColumnElement[bool]] = []
    if bbox is not None:
        min_lon, min_lat, max_lon, max_lat = bbox
        where += [
            Aoi.max_lon >= min_lon,
            Aoi.min_lon <= max_lon,
            Aoi.max_lat >= min_lat,
            Aoi.min_lat <= max_lat,
        ]
    if model is not None:
        where.append(Aoi.model == model)
    if tag is not None:
        # tags are a JSON list of strings: its text holds the tag JSON-quoted, in either dialect
        where.append(cast(Aoi.tags, Text).contains(json.dumps(tag), autoescape=True))
    if active is not None:
        where.append(Aoi.active.is_(active))
    with ctx.uow() as session:
        total = session.scalar(select(func.count()).select_from(Aoi).where(*where)) or 0
        rows = session.scalars(select(Aoi).where(*where).order_by(Aoi.id).offset(offset).limit(limit)).all()
        return AoiList(items=[aoi_public(r) for r in rows], total=total)
