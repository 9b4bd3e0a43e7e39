"""What the registry sends and receives."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modelyard.sandbox import SECRET_PREFIXES

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


class CommandLimits(BaseModel):
    """What one run of a command may use (unset: no limit but the timeout)."""

    model_config = ConfigDict(extra="forbid")

    cpu_seconds: int | None = Field(None, ge=1, le=86400, description="CPU time, seconds")
    memory_mb: int | None = Field(None, ge=32, le=1024 * 1024, description="Address space, MiB")
    output_bytes: int | None = Field(
        None,
        ge=1024,
        le=1024**3,
        description="Bytes of stdout (and of stderr) kept; past it the command is killed",
    )


class CommandSpec(BaseModel):
    """A command model's version: the arguments (the path of the STAC item is appended as the last),
    extra environment, a timeout and limits. It never sees the database's or storage's credentials."""

    model_config = ConfigDict(extra="forbid")

    argv: list[str] = Field(min_length=1, examples=[["python", "detect.py"]])
    env: dict[str, str] = Field(default_factory=dict, examples=[{"THRESHOLD": "0.5"}])
    timeout_seconds: float = Field(3600.0, gt=0, le=86400)
    limits: CommandLimits = Field(default_factory=CommandLimits)

    @field_validator("argv")
    @classmethod
    def _argv(cls, argv: list[str]) -> list[str]:
        if not all(argv) or any("\x00" in a for a in argv):
            raise ValueError("every argument must be a non-empty string without NUL")
        return argv

    @field_validator("env")
    @classmethod
    def _env(cls, env: dict[str, str]) -> dict[str, str]:
        for key in env:
            if not key or "=" in key or key.startswith(SECRET_PREFIXES):
                raise ValueError(
                    f"{key!r} may not be set: names starting with {', '.join(SECRET_PREFIXES)} are reserved"
                )
        return env


class ModelCreate(BaseModel):
    """A new model: unique name, kind, description, tags and free-form metadata; a command model's
    first version (``command``) may come with it."""

    name: str = Field(pattern=NAME_PATTERN, examples=["iris-classifier"])
    kind: Literal["onnx", "command"] = Field("onnx", description="`onnx` (served) or `command` (geo runs)")
    command: CommandSpec | None = Field(None, description="A command model's first version")
    description: str = Field("", examples=["Logistic regression on the iris data set"])
    tags: list[str] = Field(default_factory=list, examples=[["tabular", "demo"]])
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        examples=[{"task": "classification", "columns": ["f0", "f1"], "max_batch_size": 64}],
        description="Free-form JSON. Keys modelyard reads: `columns` (order of tabular rows), "
        "`max_batch_size`, `max_queue_delay_ms`, `preferred_batch_sizes` (dynamic batching).",
    )

    @model_validator(mode="after")
    def _command_only_for_command_models(self) -> ModelCreate:
        if self.command is not None and self.kind != "command":
            raise ValueError("command is only for models of kind 'command'")
        return self


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
    command: CommandSpec | None = None
    metadata: dict[str, Any]
    created_at: datetime


class ModelPublic(BaseModel):
    """A model with its versions."""

    name: str
    kind: str
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
