"""Exact k-nearest-neighbour search in process: one float32 matrix per (collection, field, version), kept
in memory and refreshed incrementally (only inferences stored since the last look are read; a record
deletion in the collection rebuilds it). A filter is a set of allowed records: the search runs over
exactly those rows, so the result is the true k nearest among the records that pass, never fewer than k
when k pass. Pure numpy: no FastAPI, no DBOS."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from modelyard.catalog.models import Collection, Inference, Vector

Metric = Literal["cosine", "dot", "l2"]


@dataclass
class VectorIndex:
    """The vectors of one (collection, field, version): row i is record ``pks[i]``."""

    dim: int
    pks: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    matrix: np.ndarray = field(default_factory=lambda: np.empty((0, 0), dtype=np.float32))
    watermark: int = 0  # the newest inference id read
    deletions: int = -1  # the collection's deletion count when built
    lock: threading.Lock = field(default_factory=threading.Lock)
    _unit: np.ndarray | None = None
    _sq: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.matrix = np.empty((0, self.dim), dtype=np.float32)

    def add(self, pks: list[int], rows: np.ndarray) -> None:
        """Add or replace the vectors of ``pks`` (a later one for the same record wins)."""
        if not pks:
            return
        new = np.asarray(rows, dtype=np.float32).reshape(len(pks), self.dim)
        ids = np.asarray(pks, dtype=np.int64)
        _, last = np.unique(ids[::-1], return_index=True)  # newest of each pk in this batch
        keep = np.sort(len(ids) - 1 - last)
        ids, new = ids[keep], new[keep]
        stale = np.isin(self.pks, ids)
        if stale.any():
            self.pks, self.matrix = self.pks[~stale], self.matrix[~stale]
        self.pks = np.concatenate([self.pks, ids])
        self.matrix = np.concatenate([self.matrix, new])
        self._unit = self._sq = None

    def unit(self) -> np.ndarray:
        """Rows scaled to unit length (zero rows stay zero), made on first need."""
        if self._unit is None:
            norms = np.linalg.norm(self.matrix, axis=1, keepdims=True)
            self._unit = self.matrix / np.where(norms == 0, 1, norms)
        return self._unit

    def squares(self) -> np.ndarray:
        """Squared row norms, for L2."""
        if self._sq is None:
            self._sq = np.einsum("ij,ij->i", self.matrix, self.matrix)
        return self._sq

    def vector_of(self, pk: int) -> np.ndarray | None:
        """The stored vector of a record."""
        hit = np.flatnonzero(self.pks == pk)
        return None if not len(hit) else self.matrix[hit[-1]]

    def search(
        self,
        query: np.ndarray,
        k: int,
        metric: Metric,
        *,
        allowed: np.ndarray | None = None,
        exclude: int | None = None,
    ) -> list[tuple[int, float]]:
        """The ``k`` nearest records as (pk, distance), nearest first; only ``allowed`` pks if given.
        Distances: cosine ``1 - cos``, dot ``-dot``, L2 the Euclidean distance."""
        with self.lock:
            return self._search(query, k, metric, allowed, exclude)

    def _search(
        self, query: np.ndarray, k: int, metric: Metric, allowed: np.ndarray | None, exclude: int | None
    ) -> list[tuple[int, float]]:
        rows = np.arange(len(self.pks)) if allowed is None else np.flatnonzero(np.isin(self.pks, allowed))
        if exclude is not None:
            rows = rows[self.pks[rows] != exclude]
        if not len(rows) or k <= 0:
            return []
        q = np.asarray(query, dtype=np.float32)
        whole = len(rows) == len(self.pks)
        if metric == "cosine":
            norm = float(np.linalg.norm(q))
            base = self.unit() if whole else self.unit()[rows]
            dist = 1.0 - base @ (q / norm if norm else q)
        elif metric == "dot":
            dist = -((self.matrix if whole else self.matrix[rows]) @ q)
        else:
            sq = self.squares() if whole else self.squares()[rows]
            mat = self.matrix if whole else self.matrix[rows]
            dist = np.sqrt(np.maximum(sq - 2.0 * (mat @ q) + float(q @ q), 0.0))
        k = min(k, len(rows))
        top = np.argpartition(dist, k - 1)[:k] if k < len(rows) else np.arange(len(rows))
        pks = self.pks[rows[top]]
        order = np.lexsort((pks, dist[top]))  # ties by pk: a stable answer
        return [(int(pks[i]), float(dist[top][i])) for i in order]


def index_for(
    cache: dict[tuple[str, str, str, str], VectorIndex],
    session: Session,
    collection: Collection,
    producer: str,
    path: list[str],
    version: str,
    dim: int,
) -> VectorIndex:
    """The up-to-date index of a vector field at a version, refreshed from what was stored since (a
    deletion in the collection since it was built rebuilds it); ``cache`` is this process's indexes."""
    collection_id, deletions = collection.id, collection.deletions
    key = (collection_id, producer, ".".join(path), version)
    index = cache.get(key)
    if index is None or index.deletions != deletions or index.dim != dim:
        index = cache[key] = VectorIndex(dim=dim, deletions=deletions)
    with index.lock:
        rows = session.execute(
            select(Inference.id, Inference.record_pk, Vector.data)
            .join(Vector, Vector.inference_id == Inference.id)
            .where(
                Inference.collection_id == collection_id,
                Inference.producer == producer,
                Inference.version == version,
                Inference.id > index.watermark,
                Vector.path == ".".join(path),
                Vector.dim == dim,
            )
            .order_by(Inference.id)
        ).all()
        if rows:
            matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), dim)
            index.add([r[1] for r in rows], matrix)
            index.watermark = rows[-1][0]
    return index
