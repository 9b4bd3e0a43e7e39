"""What crosses the wire for geo runs, their results and summaries."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field


class RunPublic(BaseModel):
    """One command-model execution over one scene for one AOI."""

    id: int
    model: str
    model_version: int | None
    aoi_id: int
    scene_id: int
    state: str = Field(description="queued → running → succeeded | failed | cancelled")
    attempts: int
    error: str | None = Field(description="Why it failed (exit status and stderr tail, timeout, …)")
    prediction_id: int | None = Field(description="The prediction it reported, if any")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RunList(BaseModel):
    """A page of runs, newest first."""

    items: list[RunPublic]
    total: int


class RunLogs(BaseModel):
    """What a run's command wrote (its last attempt; while it runs, as of a couple of seconds ago), each
    stream at most its output limit."""

    run_id: int
    stdout: str
    stderr: str


class ClassCount(BaseModel):
    """Labelled features of one class and their area (m²)."""

    count: int
    area_m2: float


class LabelSummary(BaseModel):
    """What a label item's GeoJSON holds: features, labelled area (m², geodesic), and both per class."""

    features: int
    area_m2: float
    classes: dict[str, ClassCount] = Field(examples=[{"ship": {"count": 3, "area_m2": 5120.5}}])


class PredictionPublic(BaseModel):
    """A run's reported result, as recorded."""

    id: int
    run_id: int
    model: str
    model_version: int | None
    aoi_id: int
    scene_id: int
    uri: str = Field(description="Artifact key of the stored GeoJSON")
    summary: LabelSummary
    created_at: datetime


class DayBucket(BaseModel):
    """One UTC day of a summary."""

    day: date
    runs: dict[str, int] = Field(description="runs created that day, by state")
    scenes_matched: int
    predictions: int
    labelled_area_m2: float
    classes: dict[str, int]


class Summary(BaseModel):
    """What a model (or an AOI) saw and found over a time range, in total and per UTC day."""

    model: str | None
    aoi_id: int | None
    start: datetime
    end: datetime
    runs: dict[str, int] = Field(description="runs created in the range, by state")
    scenes_seen: int = Field(description="scenes received in the range (for an AOI: overlapping its bbox)")
    scenes_matched: int
    area_covered_m2: float = Field(description="area of the AOIs covered by matched scenes")
    predictions: int
    classes: dict[str, int] = Field(description="labelled features per class")
    labelled_area_m2: float
    days: list[DayBucket]


class Geojson(BaseModel):
    """A GeoJSON document (STAC ItemCollection)."""

    model_config = {"extra": "allow"}

    type: str
    features: list[dict[str, Any]]
