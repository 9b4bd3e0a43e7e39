"""What crosses the wire about stored artifacts."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ArtifactPublic(BaseModel):
    """One stored file: its key (what ``uri`` and ``artifact://`` name), size and, when known, sha256."""

    key: str = Field(examples=["batches/flowers.csv"])
    size: int
    sha256: str | None = None


class ArtifactList(BaseModel):
    """Stored files under a prefix, by key (at most ``limit``; ``truncated`` says there are more)."""

    items: list[ArtifactPublic]
    truncated: bool = False


class UploadCreate(BaseModel):
    """A file to upload in parts: where it goes, its size and sha256 (checked when the parts are joined),
    and the size of every part but the last."""

    key: str = Field(examples=["scans/slide-001.ome.tif"])
    size: int = Field(ge=0)
    sha256: str = Field(examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"])
    part_size: int = Field(8 * 1024 * 1024, description="Bytes per part (64 KiB..64 MiB)")


class PartPublic(BaseModel):
    """One part that has arrived."""

    number: int
    size: int


class UploadPublic(UploadCreate):
    """An upload in progress: its id, how many parts it has and which have arrived."""

    id: str
    parts_total: int
    parts: list[PartPublic] = Field(default_factory=list)
