"""Exact k-nearest-neighbour search in process: one float32 matrix per (collection, field, version), kept
in memory and refreshed incrementally (only inferences stored since the last look are read; a record
deletion in the collection rebuilds it). A filter is a set of allowed records: the search runs over
exactly those rows, so the result is the true k nearest among the records that pass, never fewer than k
when k pass. The rows of a filter (and their unit vectors) are kept while the index and the filter's
result stay the same, so a repeated filter costs one small matrix product.

Above ``AnnConfig.threshold`` rows, an ANN index (``ann``) answers unfiltered queries and filters that
keep many records (over-fetching, then checking every candidate against the filter and re-ranking it
exactly); a filter that keeps few records is searched exactly over its rows, which at that size is
cheaper than over-fetching and never misses. ``EXACT_ROWS`` is where the two cost the same here
(``bench/catalog.py``). No FastAPI, no DBOS."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from modelyard.catalog.ann import Ann, AnnConfig, Graph, Metric
from modelyard.catalog.models import Inference, Vector

if TYPE_CHECKING:
    from modelyard.catalog.service import CollectionState

EXACT_ROWS = 25_000  # a filter keeping at most this many rows is searched exactly over them
SUBSETS_KEPT = 8  # filters whose rows (and unit vectors) are kept per index
SUBSET_BYTES = 256 << 20  # ...up to this much memory per index
OVERFETCH = 3  # ANN candidates per expected passing hit, before widening
SAMPLE_EVERY = 32  # an exact search over many rows bounds its k-th distance in every 32nd row first


@dataclass(frozen=True)
class Allowed:
    """The records a filter lets through (sorted pks); ``key`` names the filter and the collection
    revision it was found at, so what is derived from it can be kept."""

    key: Hashable
    pks: np.ndarray


@dataclass
class VectorIndex:
    """The vectors of one (collection, field, version): row i is record ``pks[i]``."""

    dim: int
    pks: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    matrix: np.ndarray = field(default_factory=lambda: np.empty((0, 0), dtype=np.float32))
    ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # inference id per row
    watermark: int = 0  # the newest inference id read
    revision: int = -1  # the collection's revision when last refreshed (unchanged since: nothing to read)
    deletions: int = -1  # the collection's deletion count when built
    lock: threading.Lock = field(default_factory=threading.Lock)
    ann: Ann | None = None
    _unit: np.ndarray | None = None
    _sq: np.ndarray | None = None
    _order: np.ndarray | None = None  # rows by pk
    _sorted: np.ndarray | None = None  # pks ascending (``pks[_order]``)
    _subsets: OrderedDict[Hashable, tuple[np.ndarray, np.ndarray]] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.matrix = np.empty((0, self.dim), dtype=np.float32)

    def add(self, pks: list[int], rows: np.ndarray, ids: list[int] | None = None) -> None:
        """Add or replace the vectors of ``pks`` (a later one for the same record wins); ``ids`` are the
        inferences they came from."""
        if not pks:
            return
        new = np.asarray(rows, dtype=np.float32).reshape(len(pks), self.dim)
        pk = np.asarray(pks, dtype=np.int64)
        inf = np.asarray(ids if ids is not None else [0] * len(pks), dtype=np.int64)
        _, last = np.unique(pk[::-1], return_index=True)  # newest of each pk in this batch
        keep = np.sort(len(pk) - 1 - last)
        pk, new, inf = pk[keep], new[keep], inf[keep]
        stale = np.isin(self.pks, pk)
        if stale.any():
            self.pks, self.matrix, self.ids = self.pks[~stale], self.matrix[~stale], self.ids[~stale]
        self.pks = np.concatenate([self.pks, pk])
        self.matrix = np.concatenate([self.matrix, new])
        self.ids = np.concatenate([self.ids, inf])
        self._unit = self._sq = self._order = self._sorted = None
        self._subsets.clear()
        if self.ann is not None:
            self.ann.upsert(pk, new)

    def rows_of(self, pks: np.ndarray) -> np.ndarray:
        """The rows of those ``pks`` that have a vector (in the order of ``pks``)."""
        if self._order is None or self._sorted is None:
            self._order = np.argsort(self.pks, kind="stable")
            self._sorted = self.pks[self._order]
        ordered = self._sorted
        at = np.minimum(np.searchsorted(ordered, pks), max(len(ordered) - 1, 0))
        found = ordered[at] == pks if len(ordered) else np.zeros(len(pks), dtype=bool)
        return np.asarray(self._order[at[found]])

    def _subset(self, allowed: Allowed) -> tuple[np.ndarray, np.ndarray]:
        """The rows of a filter and their unit vectors, kept while the index is unchanged."""
        hit = self._subsets.get(allowed.key)
        if hit is not None:
            self._subsets.move_to_end(allowed.key)
            return hit
        rows = np.sort(self.rows_of(allowed.pks))
        hit = self._subsets[allowed.key] = (rows, self.unit()[rows])
        while len(self._subsets) > SUBSETS_KEPT or (
            len(self._subsets) > 1 and sum(u.nbytes for _, u in self._subsets.values()) > SUBSET_BYTES
        ):
            self._subsets.popitem(last=False)
        return hit

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
        allowed: Allowed | None = None,
        exclude: int | None = None,
        exact: bool = False,
    ) -> list[tuple[int, float]]:
        """The ``k`` nearest records as (pk, distance), nearest first; only ``allowed`` pks if given.
        Distances: cosine ``1 - cos``, dot ``-dot``, L2 the Euclidean distance. ``exact`` skips the ANN
        index."""
        with self.lock:
            if k <= 0 or not len(self.pks):
                return []
            q = np.asarray(query, dtype=np.float32)
            ann = None if exact or self.ann is None else self.ann.ready(metric)
            if allowed is None:
                if ann is not None:
                    return self._approximate(ann, q, k, metric, None, exclude)
                return self._exact(q, k, metric, None, exclude)
            if ann is not None and len(allowed.pks) > EXACT_ROWS:
                return self._approximate(ann, q, k, metric, allowed, exclude)
            rows, unit = self._subset(allowed) if metric == "cosine" else (self.rows_of(allowed.pks), None)
            return self._exact(q, k, metric, rows, exclude, unit)

    def _approximate(
        self, ann: Graph, q: np.ndarray, k: int, metric: Metric, allowed: Allowed | None, exclude: int | None
    ) -> list[tuple[int, float]]:
        """ANN candidates (over-fetched under a filter, widened until k pass), with the graph's distances:
        the graph holds the same vectors as the index (every row it takes in goes to the graph at once)."""
        share = 1.0 if allowed is None else max(len(allowed.pks), 1) / len(self.pks)
        want = k + (exclude is not None)
        fetch = min(len(self.pks), int(want / share * (OVERFETCH if allowed is not None else 1)) + 1)
        while True:
            keys, dist = ann.search(q, fetch)
            if allowed is not None:
                at = np.minimum(np.searchsorted(allowed.pks, keys), len(allowed.pks) - 1)
                passing = allowed.pks[at] == keys
                keys, dist = keys[passing], dist[passing]
            if exclude is not None:
                other = keys != exclude
                keys, dist = keys[other], dist[other]
            if len(keys) >= k or fetch >= len(self.pks):
                break
            fetch = min(len(self.pks), fetch * 4)
        if len(keys) < k:  # the graph could not reach k passing records: answer exactly
            rows = None if allowed is None else self.rows_of(allowed.pks)
            return self._exact(q, k, metric, rows, exclude)
        # nearest first, ties by pk (as the exact search): the graph orders ties as it met them
        return sorted(zip(keys.tolist(), dist.tolist(), strict=True), key=lambda h: (h[1], h[0]))[:k]

    def _exact(
        self,
        q: np.ndarray,
        k: int,
        metric: Metric,
        rows: np.ndarray | None,
        exclude: int | None,
        unit: np.ndarray | None = None,
    ) -> list[tuple[int, float]]:
        """The exact k nearest over ``rows`` (all rows if None); ``unit`` the unit vectors of those rows."""
        if rows is None:
            rows = np.arange(len(self.pks))
            whole = True
        else:
            whole = False
        if exclude is not None:
            keep = self.pks[rows] != exclude
            if not keep.all():
                rows, unit, whole = rows[keep], None if unit is None else unit[keep], False
        if not len(rows):
            return []
        if metric == "cosine":
            norm = float(np.linalg.norm(q))
            base = self.unit() if whole else unit if unit is not None else self.unit()[rows]
            dist = base @ (q / norm if norm else q)
            np.subtract(1.0, dist, out=dist)  # in place: one pass fewer over a large result
        elif metric == "dot":
            dist = -((self.matrix if whole else self.matrix[rows]) @ q)
        else:
            sq = self.squares() if whole else self.squares()[rows]
            mat = self.matrix if whole else self.matrix[rows]
            dist = np.sqrt(np.maximum(sq - 2.0 * (mat @ q) + float(q @ q), 0.0))
        top = _smallest(dist, k)
        pks, near = self.pks[top if whole else rows[top]], dist[top]
        order = np.lexsort((pks, near))[:k]  # ties by pk: a stable answer
        return list(zip(pks[order].tolist(), near[order].tolist(), strict=True))


def _smallest(dist: np.ndarray, k: int) -> np.ndarray:
    """Where the ``k`` smallest distances are, with every one tied with the k-th (in no order). Over many
    rows the cut is first bounded in a sample (its k-th smallest is at least the whole's): one pass of
    compares then leaves a few hundred rows to partition, about a tenth of partitioning them all."""
    if len(dist) <= k:
        return np.arange(len(dist))
    found = None
    if len(dist) >= 4 * k * SAMPLE_EVERY:
        bound = np.partition(dist[::SAMPLE_EVERY], k - 1)[k - 1]
        found = np.flatnonzero(dist <= bound)
    if found is None or len(found) < k:  # few rows, or NaN distances in the sample
        found = np.arange(len(dist))
    near = dist[found]
    found = found[near <= np.partition(near, k - 1)[k - 1]]
    return found if len(found) >= k else np.argpartition(dist, k - 1)[:k]  # NaN distances (never <=)


def index_for(
    cache: dict[tuple[str, str, str, str], VectorIndex],
    session: Session,
    collection: CollectionState,
    producer: str,
    path: list[str],
    version: str,
    dim: int,
    ann: AnnConfig | None = None,
) -> VectorIndex:
    """The up-to-date index of a vector field at a version, refreshed from what was stored since (a
    deletion in the collection since it was built rebuilds it); ``cache`` is this process's indexes,
    ``ann`` where and from what size it gets an ANN index."""
    collection_id, deletions = collection.id, collection.deletions
    key = (collection_id, producer, ".".join(path), version)
    index = cache.get(key)
    if index is None or index.deletions != deletions or index.dim != dim:
        index = cache[key] = VectorIndex(dim=dim, deletions=deletions)
        if ann is not None:
            name = f"{collection_id}/{producer}/{'.'.join(path)}@{version}/{dim}"
            index.ann = Ann(ann, name, index, collection=collection_id, producer=producer, version=version)
    if index.revision == collection.revision:
        return index
    revision = collection.revision  # read before the rows: a write meanwhile is read again next time
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
            index.add([r[1] for r in rows], matrix, [r[0] for r in rows])
            index.watermark = rows[-1][0]
        index.revision = revision
    return index
