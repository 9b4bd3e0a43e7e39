"""Tables of run execution and results: each run's single-use callback token (``geo_run_tokens``) and
the predictions runs report (``geo_predictions``: one per run, its GeoJSON in the artifact store)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.db import Base, BigId, utcnow


class RunToken(Base):
    """The callback token of a run's current attempt, stored as its SHA-256 only: valid until
    ``expires_at``, once (``used_at`` is set by the report that used it)."""

    __tablename__ = "geo_run_tokens"

    run_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("geo_runs.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    token_hash: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class GeoPrediction(Base):
    """What one run found: the label item it reported (its GeoJSON asset stored at ``uri``), the
    footprint and time it is about, and a summary (features and labelled area per class)."""

    __tablename__ = "geo_predictions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(BigId, ForeignKey("geo_runs.id", ondelete="CASCADE"), unique=True)
    model: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[int | None] = mapped_column(Integer, default=None)
    aoi_id: Mapped[int] = mapped_column(BigId, index=True)
    scene_id: Mapped[int] = mapped_column(BigId, index=True)
    uri: Mapped[str] = mapped_column(String(500))  # artifact key of the GeoJSON
    item: Mapped[dict[str, Any]] = mapped_column()  # the label item as reported
    # {"features": n, "area_m2": total, "classes": {class: {"count": n, "area_m2": a}}}
    summary: Mapped[dict[str, Any]] = mapped_column()
    min_lon: Mapped[float] = mapped_column(Float)
    min_lat: Mapped[float] = mapped_column(Float)
    max_lon: Mapped[float] = mapped_column(Float)
    max_lat: Mapped[float] = mapped_column(Float)
    observed_at: Mapped[datetime | None] = mapped_column(default=None, index=True)  # the scene's time
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


Index("ix_geo_predictions_model_created", GeoPrediction.model, GeoPrediction.created_at)
