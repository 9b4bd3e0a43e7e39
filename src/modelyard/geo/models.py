"""Geo tables: areas of interest (``aois``), the STAC items received (``scenes``), the runs a match
starts (``geo_runs``, one per model, AOI and scene), and ``geo_counters`` (the AOI revision every
process's spatial index is keyed on)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.db import Base, BigId, utcnow

# ``Scene`` has a column named ``datetime`` (STAC's word): its annotations use this name for the type
Timestamp = datetime


class RunState(StrEnum):
    """queued -> running -> succeeded | failed | cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def is_final(self) -> bool:
        """Whether the run has stopped."""
        return self in RUN_TERMINAL


RUN_TERMINAL = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})


class Aoi(Base):
    """An area of interest: where (GeoJSON, EPSG:4326, normalised), the largest acceptable GSD, the
    wavelengths a band must cover, and the model that suitable imagery feeds."""

    __tablename__ = "aois"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    # Polygon or MultiPolygon; a shape crossing the antimeridian is split at it, so bboxes never wrap
    geometry: Mapped[dict[str, Any]] = mapped_column()
    min_lon: Mapped[float] = mapped_column(Float)
    min_lat: Mapped[float] = mapped_column(Float)
    max_lon: Mapped[float] = mapped_column(Float)
    max_lat: Mapped[float] = mapped_column(Float)
    target_resolution: Mapped[float] = mapped_column(Float)  # metres: the largest acceptable GSD
    wavelengths: Mapped[list[Any]] = mapped_column(default=list)  # µm
    model: Mapped[str] = mapped_column(String(200), index=True)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    revision: Mapped[int] = mapped_column(Integer, default=1)  # bumped by every change


class Scene(Base):
    """A STAC item received: as posted (normalised), its footprint, time, GSD and normalised bands; one
    row per collection and STAC id (an item without a collection: per STAC id)."""

    __tablename__ = "scenes"
    __table_args__ = (
        UniqueConstraint("collection", "stac_id"),
        # NULLs are never equal in a unique key: items without a collection get their own, partial one
        Index(
            "uq_scenes_stac_id_without_collection",
            "stac_id",
            unique=True,
            sqlite_where=text("collection IS NULL"),
            postgresql_where=text("collection IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    collection: Mapped[str | None] = mapped_column(String(300), default=None)
    stac_id: Mapped[str] = mapped_column(String(300))
    item: Mapped[dict[str, Any]] = mapped_column()
    geometry: Mapped[dict[str, Any]] = mapped_column()
    min_lon: Mapped[float] = mapped_column(Float)
    min_lat: Mapped[float] = mapped_column(Float)
    max_lon: Mapped[float] = mapped_column(Float)
    max_lat: Mapped[float] = mapped_column(Float)
    datetime: Mapped[Timestamp | None] = mapped_column(default=None, index=True)
    gsd: Mapped[float | None] = mapped_column(Float, default=None)
    # [{name, common_name, center_wavelength, full_width_half_max, gsd}]
    bands: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[Timestamp] = mapped_column(default=utcnow)


class GeoRun(Base):
    """One command-model execution over one scene for one AOI: created once per (model, AOI, scene)."""

    __tablename__ = "geo_runs"
    __table_args__ = (UniqueConstraint("model", "aoi_id", "scene_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[int | None] = mapped_column(Integer, default=None)
    aoi_id: Mapped[int] = mapped_column(BigId, ForeignKey("aois.id"), index=True)
    scene_id: Mapped[int] = mapped_column(BigId, ForeignKey("scenes.id"), index=True)
    state: Mapped[str] = mapped_column(String(20), default=RunState.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    claimed_by: Mapped[str | None] = mapped_column(String(100), default=None)
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


Index("ix_geo_runs_state_created", GeoRun.state, GeoRun.created_at)


class GeoCounter(Base):
    """A named counter bumped in the transaction of a change (``aois``: any AOI written), so every
    process can tell with one read whether its in-process spatial index is current."""

    __tablename__ = "geo_counters"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)
