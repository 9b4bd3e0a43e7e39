"""Catalog tables: collections, their records, the pipelines a collection is bound to, the events a
record became, what each producer (inferrer or model) said about a record per version, and the fields
seen in a collection (what filters may name, with the JSON type each holds)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.db import Base, BigId, new_id, utcnow


class Collection(Base):
    """A named group of records of one kind (works, images, scenes…)."""

    __tablename__ = "catalog_collections"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    deletions: Mapped[int] = mapped_column(Integer, default=0)  # records deleted so far (vector caches)
    revision: Mapped[int] = mapped_column(BigInteger, default=0)  # bumped by every write (filter caches)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Binding(Base):
    """A pipeline a collection is bound to: new or changed records become its events."""

    __tablename__ = "catalog_bindings"

    collection_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("catalog_collections.id", ondelete="CASCADE"), primary_key=True
    )
    pipeline: Mapped[str] = mapped_column(String(100), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Record(Base):
    """One catalog item: an id unique in its collection, text, a raw data location and attributes."""

    __tablename__ = "catalog_records"
    __table_args__ = (UniqueConstraint("collection_id", "record_id"),)

    pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    collection_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("catalog_collections.id", ondelete="CASCADE")
    )
    record_id: Mapped[str] = mapped_column(String(300))
    title: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str | None] = mapped_column(String(2000), default=None)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    content_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RecordEvent(Base):
    """A pipeline event a record became (named from record id + content hash); harvested once complete."""

    __tablename__ = "catalog_record_events"

    event_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    record_pk: Mapped[int] = mapped_column(
        BigId, ForeignKey("catalog_records.pk", ondelete="CASCADE"), index=True
    )
    collection_id: Mapped[str] = mapped_column(String(32))
    pipeline: Mapped[str] = mapped_column(String(100))
    content_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    harvested: Mapped[bool] = mapped_column(Boolean, default=False)
    harvested_runs: Mapped[int] = mapped_column(Integer, default=0)  # the event's runs when harvested
    reinference_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


Index("ix_catalog_record_events_pending", RecordEvent.harvested, RecordEvent.collection_id)


class Inference(Base):
    """What one producer (inferrer or model) at one version said about one record; ``current`` marks the
    values of the producer's current version in the collection (``ProducerVersion``), set in the same
    transaction as that alias; older and newer versions stay queryable."""

    __tablename__ = "catalog_inferences"
    # ids only grow (SQLite would reuse the highest one after a delete): vector indexes read what is newer
    __table_args__ = (UniqueConstraint("record_pk", "producer", "version"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    record_pk: Mapped[int] = mapped_column(BigId, ForeignKey("catalog_records.pk", ondelete="CASCADE"))
    collection_id: Mapped[str] = mapped_column(String(32))
    producer: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(100))
    values: Mapped[Any] = mapped_column(JSON)
    current: Mapped[bool] = mapped_column(Boolean, default=True)
    event_id: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


Index("ix_catalog_inferences_field", Inference.collection_id, Inference.producer, Inference.id)


class Vector(Base):
    """A vector inside an inference's values, kept as float32 bytes (the values hold ``{"$vector": dim}``
    in its place): written and read by the megabyte without JSON, straight into search matrices."""

    __tablename__ = "catalog_vectors"

    inference_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("catalog_inferences.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(String(300), primary_key=True)  # dotted, inside the values ("" = all)
    dim: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Field(Base):
    """A field seen in a collection (``attributes.year``, ``palette.average``) and its JSON type."""

    __tablename__ = "catalog_fields"

    collection_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("catalog_collections.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(String(300), primary_key=True)
    type: Mapped[str] = mapped_column(String(20))  # string | number | boolean | vector | object | array
    dim: Mapped[int | None] = mapped_column(Integer, default=None)  # vectors only


class ReinferenceState(StrEnum):
    """running -> succeeded (the new version is current) | failed | cancelled (the old one stays)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def is_final(self) -> bool:
        """Whether the re-inference has stopped."""
        return self in REINFERENCE_TERMINAL


REINFERENCE_TERMINAL = frozenset(
    {ReinferenceState.SUCCEEDED, ReinferenceState.FAILED, ReinferenceState.CANCELLED}
)


class ProducerVersion(Base):
    """The ``current`` alias of a producer in a collection: the version records show and search uses (the
    first version stored, then whatever a completed re-inference or a rollback made current). One row
    update switches every query at once; ``previous`` is where a rollback goes."""

    __tablename__ = "catalog_versions"

    collection_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("catalog_collections.id", ondelete="CASCADE"), primary_key=True
    )
    producer: Mapped[str] = mapped_column(String(200), primary_key=True)
    current: Mapped[str] = mapped_column(String(100))
    previous: Mapped[str | None] = mapped_column(String(100), default=None)
    switched_at: Mapped[datetime] = mapped_column(default=utcnow)


class Reinference(Base):
    """Re-inferring every record of a collection with one producer at a new version, then making that
    version current. Advanced by workers (``catalog.reinfer``); the state is the only truth. The worker
    computing its steps holds it (``claimed_by``) until its claim is older than the heartbeat timeout."""

    __tablename__ = "catalog_reinferences"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    collection_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("catalog_collections.id", ondelete="CASCADE"), index=True
    )
    producer: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(100))
    from_version: Mapped[str | None] = mapped_column(String(100), default=None)
    by_stage: Mapped[bool] = mapped_column(Boolean, default=True)  # records run through a pipeline stage
    state: Mapped[str] = mapped_column(String(20), default=ReinferenceState.RUNNING)
    failed: Mapped[int] = mapped_column(Integer, default=0)  # records whose event gave no inference
    error: Mapped[str | None] = mapped_column(Text, default=None)
    claimed_by: Mapped[str | None] = mapped_column(String(100), default=None)
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
