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
