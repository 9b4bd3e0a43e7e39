"""What crosses the wire for pipelines, events and stage runs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag


class StageSummary(BaseModel):
    """One stage of a pipeline as applied."""

    name: str
    type: str
    inputs: list[str]
    accepts: str
    produces: str
    version: str
    concurrency: int
    batch_size: int
    max_attempts: int


class PipelinePublic(BaseModel):
    """A pipeline, its latest spec and stages."""

    name: str
    description: str
    version: int
    raw_type: str
    stages: list[StageSummary]
    archive_after_seconds: int | None
    spec: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class PipelineApplied(PipelinePublic):
    """The result of applying a spec: ``changed`` is false when the spec equals the latest version."""

    changed: bool


class PipelineList(BaseModel):
    """A page of pipelines."""

    items: list[PipelinePublic]
    total: int


class EventCreate(BaseModel):
    """One event: a unique name (submitting it again is a no-op), where the raw data is, which stages
    to run (default all; a subset pulls in what it depends on) and free-form parameters for the stages."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=300, examples=["scan-000123"])
    source: str = Field(
        min_length=1,
        max_length=2000,
        description="A path in the data dir, artifact://key, or an http(s) URL",
        examples=["https://example.org/images/123.jpg"],
    )
    stages: list[str] | None = Field(None, description="Stages wanted (default: all)")
    params: dict[str, Any] = Field(default_factory=dict)


class EventBulk(BaseModel):
    """Many events at once (up to the server's per-request limit); all are checked before any is stored."""

    model_config = ConfigDict(extra="forbid")

    events: list[EventCreate] = Field(min_length=1)


class EventFolder(BaseModel):
    """An event for each file of a folder in the data dir (its subfolders are not read), in name order,
    named by the file's path in the data dir: submitting the folder again runs only its new files."""

    model_config = ConfigDict(extra="forbid")

    folder: str = Field(
        min_length=1, max_length=2000, description="A folder in the data dir", examples=["scans"]
    )
    pattern: str = Field(
        "*", min_length=1, max_length=200, description="Only files whose name matches this glob"
    )
    stages: list[str] | None = Field(None, description="Stages wanted (default: all)")
    params: dict[str, Any] = Field(default_factory=dict)


def _submission_kind(body: Any) -> str:
    """Which form a submission body is, by its keys: a folder, a list of events, or one event; so a bad
    body's 422 speaks of the form it was meant as."""
    if isinstance(body, dict):
        return "folder" if "folder" in body else "events" if "events" in body else "event"
    return "folder" if isinstance(body, EventFolder) else "events" if isinstance(body, EventBulk) else "event"


EventSubmission = Annotated[
    Annotated[EventFolder, Tag("folder")]
    | Annotated[EventBulk, Tag("events")]
    | Annotated[EventCreate, Tag("event")],
    Discriminator(_submission_kind),
]
"""The body of an event submission: one event, ``{"events": [...]}``, or ``{"folder": ...}``."""


class EventSubmitted(BaseModel):
    """One submitted event: ``created`` is false when an event of that name already existed."""

    id: str
    name: str
    created: bool
    state: str


class EventsSubmitted(BaseModel):
    """What a submission did: how many events are new, how many already existed, and each of them."""

    created: int
    existing: int
    events: list[EventSubmitted]


class OutputRef(BaseModel):
    """Where a stage's output is and what it is."""

    kind: str
    key: str | None
    size: int | None
    content_hash: str | None
    archived: bool
    url: str


class StageError(BaseModel):
    """Why a stage run failed (or last failed, while it is retried)."""

    type: str | None
    detail: str | None


class StageRunPublic(BaseModel):
    """One stage on one event."""

    stage: str
    state: str
    attempts: int
    cached: bool
    result: Any = None
    output: OutputRef | None
    error: StageError | None
    traceback: str | None
    logs_url: str | None
    ready_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None


class RawPublic(BaseModel):
    """Where the raw data was fetched to, once, for every stage."""

    kind: str
    location: str
    size: int
    sha256: str
    content_type: str | None
    fetches: int


class EventPublic(BaseModel):
    """An event, where it is (``stage``: the stage it is at), and every stage run."""

    id: str
    name: str
    pipeline: str
    version: int
    source: str
    state: str
    stage: str | None
    params: dict[str, Any]
    error: StageError | None
    error_stage: str | None
    runs: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    latency_ms: float | None
    archived_at: datetime | None
    raw: RawPublic | None
    stages: list[StageRunPublic]


class EventSummary(BaseModel):
    """An event in a list: its state and the stage it is at."""

    id: str
    name: str
    state: str
    stage: str | None
    error_stage: str | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    archived_at: datetime | None


class EventList(BaseModel):
    """A page of events, newest first, with the cursors of the pages on either side (None at an end)."""

    items: list[EventSummary]
    total: int | None = Field(description="Every matching event (None when not counted)")
    newer: str | None = Field(default=None, description="Pass as `after` for the newer page")
    older: str | None = Field(default=None, description="Pass as `before` for the older page")


class RerunRequest(BaseModel):
    """Run an event again: every stage, or one stage and what depends on it. Unchanged inputs of an
    unchanged stage are served from the content-hash cache unless ``force``."""

    model_config = ConfigDict(extra="forbid")

    stage: str | None = None
    force: bool = False


class StageQueue(BaseModel):
    """One stage's queue: runs waiting (pending on inputs, ready), running, done, failed, skipped; the age
    of the oldest ready run; and events done per second over the last minute."""

    stage: str
    pending: int
    ready: int
    running: int
    done: int
    failed: int
    skipped: int
    oldest_ready_seconds: float | None
    throughput_per_s: float


class EventCounts(BaseModel):
    """Events of a pipeline per state (``running`` is "in process")."""

    pending: int
    running: int
    complete: int
    failed: int
    cancelled: int


class QueueSnapshot(BaseModel):
    """The queue watcher: per stage queues and per state event counts of a pipeline."""

    pipeline: str
    at: datetime
    events: EventCounts
    stages: list[StageQueue]


class ErrorGroup(BaseModel):
    """Failures of one stage grouped by error type, with examples."""

    stage: str
    error_type: str
    count: int
    last_at: datetime | None
    example: str | None
    events: list[str]


class ErrorReport(BaseModel):
    """The stage watcher: error groups of a pipeline (final failures and failed attempts being retried)."""

    pipeline: str
    at: datetime
    groups: list[ErrorGroup]
