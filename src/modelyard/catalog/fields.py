"""The fields of a collection: every attribute path and inferred value path seen, with its JSON type, so a
search can refuse an unknown field or a value of the wrong type, and vectors know their dimension."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from modelyard.catalog import backends
from modelyard.catalog.models import Field

MAX_DEPTH = 3  # nested objects deeper than this are one ``object`` field
VECTOR_MIN = 16  # a list of at least this many numbers is a vector (stored as float32); shorter: an array
BASE_FIELDS = {"id": "string", "title": "string", "description": "string", "source": "string"}


def json_type(value: Any) -> str | None:
    """The catalog type of one JSON value (None for null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        if len(value) >= VECTOR_MIN and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        ):
            return "vector"
        return "array"
    return "object"


def paths(prefix: str, value: Any, depth: int = 0) -> Iterator[tuple[str, str, int | None]]:
    """Every (path, type, dim) in ``value`` under ``prefix``."""
    if isinstance(value, dict) and depth < MAX_DEPTH:
        for key, sub in value.items():
            yield from paths(f"{prefix}.{key}" if prefix else str(key), sub, depth + 1)
        return
    kind = json_type(value)
    if kind is not None and prefix:
        yield prefix, kind, len(value) if kind == "vector" else None


def split_vectors(values: Any, path: str = "", depth: int = 0) -> tuple[Any, list[tuple[str, bytes, int]]]:
    """``values`` with each vector replaced by ``{"$vector": dim}``, and the vectors as (path, float32
    bytes, dim)."""
    if isinstance(values, dict) and depth < MAX_DEPTH:
        out: dict[str, Any] = {}
        found: list[tuple[str, bytes, int]] = []
        for key, sub in values.items():
            out[key], more = split_vectors(sub, f"{path}.{key}" if path else str(key), depth + 1)
            found.extend(more)
        return out, found
    if _floats(values) or json_type(values) == "vector":
        return {"$vector": len(values)}, [(path, np.asarray(values, dtype=np.float32).tobytes(), len(values))]
    return values, []


def _floats(values: Any) -> bool:
    """Whether ``values`` is a vector of floats alone (the common vector, told apart at less cost)."""
    return type(values) is list and len(values) >= VECTOR_MIN and all(type(v) is float for v in values)


def merge_vectors(values: Any, vectors: dict[str, list[float]]) -> Any:
    """``values`` with each ``{"$vector": dim}`` replaced by its vector (the inverse of ``split_vectors``)."""
    if "" in vectors:
        return vectors[""]
    for path, vector in vectors.items():
        *parents, leaf = path.split(".")
        target = values
        for part in parents:
            target = target[part]
        target[leaf] = vector
    return values


def observe(session: Session, collection_id: str, found: Iterable[tuple[str, str, int | None]]) -> None:
    """Record fields not seen before in the collection (the first type seen is the field's type)."""
    new: dict[str, tuple[str, int | None]] = {}
    for path, kind, dim in found:
        new.setdefault(path, (kind, dim))
    if not new:
        return
    known = set(
        session.scalars(
            select(Field.path).where(Field.collection_id == collection_id, Field.path.in_(list(new)))
        )
    )
    rows = [
        {"collection_id": collection_id, "path": path, "type": kind, "dim": dim}
        for path, (kind, dim) in new.items()
        if path not in known
    ]
    backends.insert_new(session, Field.__table__, rows)  # type: ignore[arg-type]


def field_types(session: Session, collection_id: str) -> dict[str, tuple[str, int | None]]:
    """Every field of the collection (base fields included) with its type and dimension."""
    got: dict[str, tuple[str, int | None]] = {k: (v, None) for k, v in BASE_FIELDS.items()}
    for path, kind, dim in session.execute(
        select(Field.path, Field.type, Field.dim).where(Field.collection_id == collection_id)
    ):
        got[path] = (kind, dim)
    return got
