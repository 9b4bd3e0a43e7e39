"""What crosses the wire for AOIs and scenes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

Timestamp = datetime  # ``ScenePublic`` has a field named ``datetime`` (STAC's word)

Name = Annotated[str, Field(min_length=1, max_length=200)]
Tag = Annotated[str, Field(min_length=1, max_length=100)]
Wavelength = Annotated[float, Field(gt=0, le=1000, description="µm")]
SQUARE = {
    "type": "Polygon",
    "coordinates": [[[5.0, 45.0], [6.0, 45.0], [6.0, 46.0], [5.0, 46.0], [5.0, 45.0]]],
}


class AoiCreate(BaseModel):
    """A new area of interest."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    geometry: dict[str, Any] = Field(
        description="GeoJSON Polygon or MultiPolygon, EPSG:4326 (lon, lat); a ring crossing the "
        "antimeridian is split there",
        examples=[SQUARE],
    )
    target_resolution: float = Field(gt=0, description="The largest acceptable GSD, in metres")
    wavelengths: list[Wavelength] = Field(
        default_factory=list, max_length=50, description="µm; each must fall inside some band of a scene"
    )
    model: Name = Field(description="The registered model that suitable imagery feeds")
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    active: bool = True


class AoiUpdate(BaseModel):
    """Fields of an AOI to change (the others stay)."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    geometry: dict[str, Any] | None = None
    target_resolution: float | None = Field(None, gt=0)
    wavelengths: list[Wavelength] | None = Field(None, max_length=50)
    model: Name | None = None
    tags: list[Tag] | None = Field(None, max_length=50)
    active: bool | None = None


class AoiPublic(BaseModel):
    """An area of interest as stored (geometry normalised)."""

    id: int
    name: str
    geometry: dict[str, Any]
    bbox: list[float] = Field(description="[min_lon, min_lat, max_lon, max_lat]")
    target_resolution: float
    wavelengths: list[float]
    model: str
    tags: list[str]
    active: bool
    revision: int
    created_at: datetime
    updated_at: datetime


class AoiList(BaseModel):
    """A page of AOIs and how many match the filters."""

    items: list[AoiPublic]
    total: int


class BandPublic(BaseModel):
    """A band, normalised: wavelengths in µm, GSD in metres (None when unknown)."""

    name: str | None
    common_name: str | None
    center_wavelength: float | None
    full_width_half_max: float | None
    gsd: float | None


class ScenePublic(BaseModel):
    """A STAC item received, with what modelyard read from it."""

    id: int
    collection: str | None
    stac_id: str
    bbox: list[float]
    datetime: Timestamp | None
    gsd: float | None
    bands: list[BandPublic]
    created_at: Timestamp
    item: dict[str, Any] | None = Field(None, description="The item as received (GET of one scene)")


class SceneList(BaseModel):
    """A page of scenes and how many match the filters."""

    items: list[ScenePublic]
    total: int


class RunQueued(BaseModel):
    """A match: the run it queued (``new`` false when that run existed already)."""

    aoi_id: int
    model: str
    run_id: int
    new: bool


class Explained(BaseModel):
    """One AOI considered for a scene: whether it matched, and each rule's outcome."""

    aoi_id: int
    name: str
    model: str
    matched: bool
    reasons: list[str]


class SceneReceived(BaseModel):
    """One item of a post: the scene stored (``new`` false when it was received before), its matches."""

    scene_id: int
    stac_id: str
    collection: str | None
    new: bool
    matches: list[RunQueued]
    unvalidated_extensions: list[str] = Field(
        default_factory=list,
        description="Extension schemas the item declares that are not shipped (not fetched)",
    )
    explain: list[Explained] | None = None


class ScenesPosted(BaseModel):
    """What a post of one item, a collection or a URL did."""

    received: int
    new_scenes: int
    runs_queued: int
    scenes: list[SceneReceived]


class SceneUrl(BaseModel):
    """A URL to fetch a STAC Item or ItemCollection from."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2000)
