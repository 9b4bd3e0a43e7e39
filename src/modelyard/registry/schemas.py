"""What the registry sends and receives."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"


class TensorSpec(BaseModel):
    """One input or output of a model: name, V2 datatype and shape (``-1`` or a name for dynamic dims)."""

    name: str
    datatype: str
    shape: list[int | str]


class Signature(BaseModel):
    """Inputs and outputs read from the ONNX file on upload."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    opset: int | None = None
    producer: str | None = None


class ModelCreate(BaseModel):
    """A new model: unique name, description, tags and free-form metadata."""

    name: str = Field(pattern=NAME_PATTERN, examples=["iris-classifier"])
    description: str = Field("", examples=["Logistic regression on the iris data set"])
    tags: list[str] = Field(default_factory=list, examples=[["tabular", "demo"]])
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        examples=[{"task": "classification", "columns": ["f0", "f1"], "max_batch_size": 64}],
        description="Free-form JSON. Keys modelyard reads: `columns` (order of tabular rows), "
        "`max_batch_size`, `max_queue_delay_ms`, `preferred_batch_sizes` (dynamic batching).",
    )


class ModelUpdate(BaseModel):
    """Changes to a model; `metadata` is merged key by key (a null value removes the key)."""

    description: str | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = Field(None, examples=[{"owner": "vision-team"}])


class VersionPublic(BaseModel):
    """One immutable version of a model."""

    model_config = ConfigDict(from_attributes=True)

    model: str
    version: int
    size: int
    sha256: str
    signature: Signature
    metadata: dict[str, Any]
    created_at: datetime


class ModelPublic(BaseModel):
    """A model with its versions."""

    name: str
    description: str
    tags: list[str]
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    latest_version: int | None
    versions: list[VersionPublic]


class ModelList(BaseModel):
    """A page of models."""

    items: list[ModelPublic]
    total: int
