"""What crosses the wire for the catalog: collections, records, ingest reports, inferences and searches."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class CollectionCreate(BaseModel):
    """A new collection: a unique name, a description and the pipelines its records flow through."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME, examples=["paintings"])
    description: str = Field("", max_length=10_000)
    pipelines: list[str] = Field(default_factory=list, description="Pipelines new records become events of")


class CollectionUpdate(BaseModel):
    """Changes to a collection (fields left out stay as they are)."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(None, max_length=10_000)
    pipelines: list[str] | None = Field(None, description="The full list of bound pipelines")


class CollectionPublic(BaseModel):
    """A collection with its record count and bound pipelines."""

    name: str
    description: str
    pipelines: list[str]
    records: int
    created_at: datetime
    updated_at: datetime


class CollectionList(BaseModel):
    """A page of collections."""

    items: list[CollectionPublic]
    total: int


class RecordCreate(BaseModel):
    """A record: an id unique in its collection, text, a raw data location and free-form attributes.
    ``content_hash`` (sha256 of the raw data, when known) decides whether a changed record runs again."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=300, examples=["work-0001"])
    title: str = Field("", max_length=10_000)
    description: str = Field("", max_length=100_000)
    source: str | None = Field(
        None, max_length=2000, description="A path in the data dir, artifact://key, or an http(s) URL"
    )
    attributes: dict[str, Any] = Field(default_factory=dict)
    content_hash: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")


class RecordUpdate(BaseModel):
    """Changes to a record (fields left out stay as they are)."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, max_length=10_000)
    description: str | None = Field(None, max_length=100_000)
    source: str | None = Field(None, max_length=2000)
    attributes: dict[str, Any] | None = None
    content_hash: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")


class InferencePublic(BaseModel):
    """What one producer at one version said about a record."""

    producer: str
    version: str
    current: bool
    values: Any
    event_id: str | None
    created_at: datetime


class RecordPublic(BaseModel):
    """A record with the current version's inferred values, by producer."""

    id: str
    title: str
    description: str
    source: str | None
    attributes: dict[str, Any]
    content_hash: str | None
    inferred: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime


class RecordList(BaseModel):
    """A page of records, and the cursor of the next page (None at the end)."""

    items: list[RecordPublic]
    total: int
    next_cursor: str | None = None


class LineError(BaseModel):
    """One rejected line of an ingest file."""

    line: int
    field: str | None
    detail: str
    id: str | None = None


class IngestReport(BaseModel):
    """What a bulk ingest did: every line is counted as created, updated, unchanged or rejected."""

    lines: int
    created: int
    updated: int
    unchanged: int
    rejected: int
    events: int = Field(0, description="Pipeline events submitted for new or changed records")
    errors: list[LineError]


class InferenceList(BaseModel):
    """Every inference of a record, newest first."""

    items: list[InferencePublic]


Op = Literal["eq", "ne", "lt", "lte", "gt", "gte", "in", "exists"]


class Condition(BaseModel):
    """One condition on a field: ``{"field": "attributes.year", "op": "gte", "value": 1900}``."""

    model_config = ConfigDict(extra="forbid")

    field: str
    op: Op = "eq"
    value: Any = None


class Filter(BaseModel):
    """A condition, or ``and`` / ``or`` of filters (nested freely)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    field: str | None = None
    op: Op = "eq"
    value: Any = None
    all_of: list[Filter] | None = Field(None, alias="and")
    any_of: list[Filter] | None = Field(None, alias="or")


class VectorQuery(BaseModel):
    """k nearest by a record's vector (``record``, itself excluded) or by a given ``vector``."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(description="A vector field, e.g. palette.embedding")
    record: str | None = None
    vector: list[float] | None = None
    url: str | None = Field(
        None,
        max_length=2000,
        description="An image URL, embedded on the fly by the field's producer (or upload it: search:upload)",
    )
    metric: Literal["cosine", "dot", "l2"] = "cosine"
    k: int = Field(10, ge=1)
    version: str | None = Field(None, description="The producer version (default: the current one)")
    exact: bool = Field(
        False,
        description="Search every vector exactly, never through the ANN index (a large collection has one)",
    )


class ColourQuery(BaseModel):
    """Hex colours with weights, matched against palette inferences."""

    model_config = ConfigDict(extra="forbid")

    colours: dict[str, float] = Field(description='{"#c0392b": 1.0, "#2980b9": 0.5}')
    field: str = Field("palette", description="The palette producer")
    k: int = Field(10, ge=1)


class SortKey(BaseModel):
    """Sort by a field, ascending or descending (ties broken by insertion order)."""

    model_config = ConfigDict(extra="forbid")

    field: str
    order: Literal["asc", "desc"] = "asc"


class SearchQuery(BaseModel):
    """A search: any of filter, text, vector and colour; fused by reciprocal rank when several rank."""

    model_config = ConfigDict(extra="forbid")

    filter: Filter | None = None
    text: str | None = Field(None, min_length=1, max_length=1000)
    vector: VectorQuery | None = None
    colour: ColourQuery | None = None
    weights: dict[Literal["text", "vector", "colour"], float] = Field(default_factory=dict)
    sort: SortKey | None = None
    facets: list[str] = Field(default_factory=list, max_length=20)
    limit: int = Field(20, ge=1, le=1000)
    cursor: str | None = None
    inferred: list[str] | None = Field(
        None, description="Producers whose current values the hits carry (default all; [] for none)"
    )


class Why(BaseModel):
    """Why a hit ranked: its rank and score in each ranking that found it."""

    text_rank: int | None = None
    text_score: float | None = None
    vector_rank: int | None = None
    vector_distance: float | None = None
    colour_rank: int | None = None
    colour_score: float | None = None
    fused: float | None = None


class Hit(BaseModel):
    """One search result."""

    record: RecordPublic
    why: Why | None = None


class SearchResult(BaseModel):
    """A page of hits, the total that matched, facets and the next page's cursor."""

    hits: list[Hit]
    total: int
    facets: dict[str, dict[str, int]] = Field(default_factory=dict)
    next_cursor: str | None = None


class VersionSwitch(BaseModel):
    """Make ``version`` of ``producer`` current for a collection: every record is re-inferred with it in
    the background, and search switches to it once the whole collection has it."""

    model_config = ConfigDict(extra="forbid")

    producer: str = Field(min_length=1, max_length=200, examples=["embedder"])
    version: str = Field(min_length=1, max_length=100, examples=["2"], coerce_numbers_to_str=True)


class ReinferencePublic(BaseModel):
    """A re-inference: its state and progress (records of the collection that have the new version)."""

    id: str
    collection: str
    producer: str
    version: str
    from_version: str | None
    state: str
    total: int = Field(description="Records to infer (those with a source, or with this producer's values)")
    done: int = Field(description="Records that have values of the new version")
    failed: int = Field(description="Records whose event gave no values of the new version")
    progress: float = Field(description="done / total (1.0 for an empty collection)")
    error: str | None
    created_at: datetime
    finished_at: datetime | None


class ProducerVersionPublic(BaseModel):
    """A producer's ``current`` version in a collection (what search uses), the one a rollback returns to,
    and its latest re-inference."""

    producer: str
    current: str
    previous: str | None
    switched_at: datetime
    reinference: ReinferencePublic | None = None


class VersionList(BaseModel):
    """Every producer of a collection with its current version."""

    items: list[ProducerVersionPublic]


class ContentInference(BaseModel):
    """What one producer at one version said about content given in the request (stored nowhere)."""

    producer: str
    version: str
    values: Any


class ContentInferences(BaseModel):
    """What every inferrer of a collection's bound pipelines said about the content."""

    items: list[ContentInference]
