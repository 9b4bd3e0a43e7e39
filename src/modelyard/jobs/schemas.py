"""What the jobs API (and its dead letters) send and receive."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, FiniteFloat, model_validator

from modelyard.registry.schemas import NAME_PATTERN

OnError = Literal["fail", "skip"]
InputFormat = Literal["csv", "jsonl", "parquet", "npy"]
OutputFormat = Literal["parquet", "csv", "jsonl"]


class JobOptions(BaseModel):
    """How a job treats bad rows and writes its results."""

    on_error: OnError = Field(
        "fail",
        description="`fail`: a malformed row fails the job (its row number in the error); "
        "`skip`: malformed rows are left out of the output, counted and listed per chunk.",
    )
    output_format: OutputFormat | None = Field(
        None,
        description="Default results format; empty means the input's format (Parquet for .npy, JSONL "
        "for inline rows). Any format can still be asked for on download.",
    )
    chunk_rows: int | None = Field(
        None, ge=1, le=500_000, description="Rows per chunk; empty means the server's setting."
    )


def _finite(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return False
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def first_bad_row(rows: Any) -> Any:
    """Refuse inline rows at their first bad value, with one error: validated value by value, a body of
    millions of bad values would build millions of errors."""
    if not isinstance(rows, list):
        return rows  # not rows at all: the type's own error says so
    for i, row in enumerate(rows):
        values = row.values() if isinstance(row, dict) else row if isinstance(row, list) else None
        if values is None:
            raise ValueError(f"row {i} is neither a list of numbers nor an object of numbers")
        for value in values:
            if not _finite(value):
                raise ValueError(f"row {i} holds {str(value)[:40]!r}, not a finite number")
    return rows


Rows = Annotated[list[list[FiniteFloat] | dict[str, FiniteFloat]], BeforeValidator(first_bad_row)]


class JobCreate(BaseModel):
    """A batch prediction over inline `rows` or an input file already in the artifact store (`uri`).

    Files are uploaded instead as `multipart/form-data` to the same endpoint.
    """

    model: str = Field(pattern=NAME_PATTERN, examples=["churn"])
    version: int | Literal["latest"] = Field("latest", examples=["latest", 3])
    rows: (
        Annotated[list[list[FiniteFloat] | dict[str, FiniteFloat]], BeforeValidator(first_bad_row)] | None
    ) = Field(
        None,
        description="Rows as lists of numbers, or objects keyed by the model's metadata.columns. Numbers are "
        "finite, as on every JSON route: NaN and Infinity are not JSON (400); for missing values upload a "
        "file.",
        examples=[[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]],
    )
    uri: str | None = Field(
        None, description="Key of an input file in the artifact store.", examples=["batches/2026-11-24.csv"]
    )
    format: InputFormat | None = Field(
        None, description="Input format of `uri` when its suffix does not say."
    )
    options: JobOptions = Field(default_factory=lambda: JobOptions())

    @model_validator(mode="after")
    def _one_input(self) -> JobCreate:
        if (self.rows is None) == (self.uri is None):
            raise ValueError('send exactly one of "rows" or "uri" (or upload a file as multipart)')
        return self


class JobInput(BaseModel):
    """Where a job's rows come from."""

    kind: Literal["inline", "upload", "uri"]
    format: str
    uri: str | None = Field(None, description="Where the rows are stored; none for small inline rows.")
    size: int


class Progress(BaseModel):
    """How far a job is: rows and chunks, rate and estimated time left."""

    total_rows: int | None
    rows_done: int
    rows_failed: int
    fraction: float
    chunk_count: int
    chunks_done: int
    chunks_failed: int
    rows_per_second: float | None
    eta_seconds: float | None


class JobError(BaseModel):
    """Why a job failed: a stable code and a human detail (row numbers included for malformed rows)."""

    code: str
    detail: str


class JobPublic(BaseModel):
    """A batch prediction job."""

    id: str
    model: str
    version: int
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    input: JobInput
    options: dict[str, Any]
    progress: Progress
    error: JobError | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    links: dict[str, str]


class JobList(BaseModel):
    """A page of jobs, newest first."""

    items: list[JobPublic]
    total: int
    offset: int
    limit: int


class ChunkPublic(BaseModel):
    """One chunk of a job with its outcome and, if it failed, the error and traceback."""

    index: int
    state: Literal["queued", "running", "done", "failed", "dead", "cancelled"]
    row_start: int
    row_end: int
    rows: int
    rows_failed: int
    row_errors: list[dict[str, Any]]
    attempts: int
    error_code: str | None
    error: str | None
    traceback: str | None
    executor_id: str | None
    started_at: datetime | None
    finished_at: datetime | None


class ChunkList(BaseModel):
    """The chunks of a job, in order."""

    items: list[ChunkPublic]


class DeadLetter(BaseModel):
    """A chunk that failed every attempt: its error and traceback; re-submit it through the API."""

    job_id: str
    index: int
    model: str
    version: int
    row_start: int
    row_end: int
    attempts: int
    error_code: str | None
    error: str | None
    traceback: str | None
    failed_at: datetime | None
    retry: str = Field(description="Path to POST to re-submit the chunk.")


class DeadLetterList(BaseModel):
    """Dead letters, newest first."""

    items: list[DeadLetter]
    total: int
