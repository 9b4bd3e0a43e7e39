"""Approximate nearest neighbours for the in-process vector indexes: an HNSW graph (hnswlib) per metric a
query asks for, over the rows of one ``VectorIndex`` keyed by record pk.

hnswlib was chosen over usearch by measurement on this machine (100,000 x 384 clustered float32
vectors, M 16, ef_construction 128, one query thread): it built in about half usearch's time and
answered unfiltered queries 2-3x faster at the same ef with the same recall (``bench/catalog.py`` runs
both side by side).

Life of a graph:

- made on the first query of a metric once the index holds ``AnnConfig.threshold`` rows, in a
  background thread: exact search answers until it is ready (never a slower answer than today's);
- persisted under ``AnnConfig.folder`` (one file per collection, field, version and metric, written
  whole and renamed into place, with the newest inference id it holds beside it); a process that finds
  the file loads it and catches up with what was stored since instead of building again; a missing or
  unreadable file, or one made with other graph parameters (``M``, ``EF_CONSTRUCTION``), is rebuilt;
- evicted (``evict``) when its version is neither the producer's current nor its previous one (a switch
  made another current: the previous stays for a rollback), or its collection is deleted;
- kept in step incrementally: rows the index takes in are added to every ready graph at once (a
  record's newer vector replaces its older one), and records deleted since the file was written are
  removed when it is loaded.

hnswlib is an optional dependency (``pip install modelyard[ann]``; ``make test`` installs it): it has no
wheels and builds from source, which would make a fresh ``make run`` wait minutes for a compiler. Without
it every query is exact, and the first query over the threshold says so once in the log.

No FastAPI, no DBOS.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import threading
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from modelyard.catalog.vectors import VectorIndex

Metric = Literal["cosine", "dot", "l2"]

log = logging.getLogger(__name__)
SPACE = {"cosine": "cosine", "dot": "ip", "l2": "l2"}
# A wider graph reaches the same recall with a narrower beam: on the bench data (100,000 x 384 clustered,
# 100 and 300 queries, one process alternating) M 48 / ef_construction 200 at ef 64 gave recall@10
# 0.999 / 0.997 in about 0.36 ms, M 16 / 128 at ef 160 0.996 in 0.41 ms (ef 128: 0.993), for a build
# about 1.5x as long (22 s against 15 s on two threads) and 25 MB more per 100,000 rows.
M = 48  # graph degree
EF_CONSTRUCTION = 200  # candidates kept while inserting
EF_SEARCH = 64  # candidates kept while searching
MIN_CAPACITY = 1024


_HNSWLIB: list[bool] = []  # found or not, checked once per process


def _hnswlib_installed() -> bool:
    """Whether hnswlib can be imported; the first time it cannot, the log says exact search goes on."""
    if not _HNSWLIB:
        _HNSWLIB.append(importlib.util.find_spec("hnswlib") is not None)
        if not _HNSWLIB[0]:
            log.warning("hnswlib is not installed (pip install 'modelyard[ann]'): catalog search stays exact")
    return _HNSWLIB[0]


@dataclass(frozen=True)
class AnnConfig:
    """Where graphs are kept (None: in memory only) and from how many rows an index gets one."""

    folder: Path | None
    threshold: int
    background: bool = True  # build in a thread (False: the query that asks waits; tests)


class Graph:
    """One hnswlib HNSW graph for one metric, keyed by record pk."""

    def __init__(self, dim: int, metric: Metric, capacity: int | None = MIN_CAPACITY):
        """A new empty graph with room for ``capacity`` rows (None: one ``load`` fills)."""
        import hnswlib

        self.dim, self.metric = dim, metric
        self.index = hnswlib.Index(space=SPACE[metric], dim=dim)
        if capacity is not None:
            self.index.init_index(
                max_elements=max(capacity, MIN_CAPACITY), M=M, ef_construction=EF_CONSTRUCTION
            )
            self.index.set_ef(EF_SEARCH)

    def __len__(self) -> int:
        return int(self.index.get_current_count())

    def keys(self) -> np.ndarray:
        """Every key (record pk) in the graph, deleted ones included."""
        return np.asarray(self.index.get_ids_list(), dtype=np.int64)

    def upsert(self, pks: np.ndarray, rows: np.ndarray) -> None:
        """Add rows; a pk already there (even marked deleted) gets the new vector."""
        if not len(pks):
            return
        need = len(self) + len(pks)
        if need > self.index.get_max_elements():
            self.index.resize_index(max(need, 2 * self.index.get_max_elements()))
        self.index.add_items(np.ascontiguousarray(rows, dtype=np.float32), pks, num_threads=2)

    def remove(self, pks: np.ndarray) -> None:
        """Mark rows deleted by pk (searches skip them)."""
        for pk in pks.tolist():
            with suppress(RuntimeError):  # deleted already
                self.index.mark_deleted(pk)

    def search(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``n`` nearest keys, nearest first, and their distances as ``VectorIndex.search`` gives
        them (cosine ``1 - cos``, dot ``-dot``, L2 Euclidean; hnswlib's are ``1 - dot`` and the square);
        ``n`` widens the beam too (an over-fetch sees more)."""
        self.index.set_ef(max(EF_SEARCH, n))
        while n > 0:
            try:
                labels, distances = self.index.knn_query(query, k=n, num_threads=1)
                break
            except RuntimeError:  # fewer live rows than n
                n //= 2
        else:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        dist = distances.reshape(-1)
        if self.metric == "dot":
            dist = dist - np.float32(1.0)
        elif self.metric == "l2":
            dist = np.sqrt(np.maximum(dist, 0))
        return labels.reshape(-1).astype(np.int64), dist

    def save(self, path: Path, watermark: int, version: str = "") -> None:
        """Write the graph and its watermark (and the version it holds), each whole, renamed into place."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        self.index.save_index(str(tmp))
        os.replace(tmp, path)
        meta = path.with_suffix(".json")
        info = {"watermark": watermark, "count": len(self), "version": version}
        meta.with_suffix(".jtmp").write_text(json.dumps(info))
        os.replace(meta.with_suffix(".jtmp"), meta)

    @classmethod
    def load(cls, path: Path, dim: int, metric: Metric) -> tuple[Graph, int] | None:
        """A saved graph and its watermark, or None if missing, unreadable or of another shape."""
        meta = path.with_suffix(".json")
        if not path.exists() or not meta.exists():
            return None
        try:
            info = json.loads(meta.read_text())
            graph = cls(dim, metric, capacity=None)
            graph.index.load_index(str(path), max_elements=max(2 * int(info["count"]), MIN_CAPACITY))
            graph.index.set_ef(EF_SEARCH)
        except Exception as exc:  # a torn or foreign file is rebuilt, never trusted
            log.warning("catalog ANN file %s unreadable (%s): rebuilding", path, exc)
            return None
        if graph.index.dim != dim or (graph.index.M, graph.index.ef_construction) != (M, EF_CONSTRUCTION):
            return None  # made with other parameters (an older modelyard): built again
        return graph, int(info["watermark"])


LEGACY = re.compile(r"[0-9a-f]{24}-(cosine|dot|l2)\.json")  # one hash of the whole name, no version


def _short(text: str, n: int = 12) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def evict(
    folder: Path, collection: str, producer: str | None = None, keep: frozenset[str] = frozenset()
) -> int:
    """Delete the saved graphs of a collection (of one producer, if given) but those of the versions in
    ``keep``; returns how many graphs. A graph is derived data: one asked for again is rebuilt."""
    pattern = f"{_short(collection)}-{_short(producer) if producer is not None else '*'}-*.json"
    dropped = 0
    legacy = [m for m in folder.glob("*.json") if LEGACY.fullmatch(m.name)]  # named before evict: never read
    for meta in [*folder.glob(pattern), *legacy]:
        try:
            version = json.loads(meta.read_text()).get("version")
        except (OSError, ValueError):  # torn or gone meanwhile: not a graph anyone can load
            version = None
        if version in keep:
            continue
        meta.with_suffix(".hnsw").unlink(missing_ok=True)
        meta.unlink(missing_ok=True)
        dropped += 1
    return dropped


class Ann:
    """The graphs of one ``VectorIndex``; every method but the build runs under the index's lock."""

    def __init__(
        self,
        config: AnnConfig,
        name: str,
        index: VectorIndex,
        *,
        collection: str = "",
        producer: str = "",
        version: str = "",
    ):
        """The graphs of ``index`` (``name`` says which field and version it holds); ``collection``,
        ``producer`` and ``version`` name its files so that ``evict`` finds them."""
        self.config, self.index, self.version = config, index, version
        self.stem = f"{_short(collection)}-{_short(producer)}-{_short(name, 24)}"
        self.graphs: dict[str, Graph] = {}
        self.building: set[str] = set()

    def path(self, metric: str) -> Path | None:
        """The graph's file, if graphs are persisted."""
        return None if self.config.folder is None else self.config.folder / f"{self.stem}-{metric}.hnsw"

    def ready(self, metric: Metric) -> Graph | None:
        """The graph of ``metric`` if it is ready; else starts making it (exact search answers meanwhile)."""
        graph = self.graphs.get(metric)
        if graph is not None or len(self.index.pks) < self.config.threshold:
            return graph
        if not _hnswlib_installed():
            return None
        if metric not in self.building:
            self.building.add(metric)
            if self.config.background:
                threading.Thread(target=self._make, args=(metric, True), daemon=True).start()
            else:
                self._make(metric, False)
        return self.graphs.get(metric)

    def upsert(self, pks: np.ndarray, rows: np.ndarray) -> None:
        """Rows the index just took in: into every ready graph."""
        for graph in self.graphs.values():
            graph.upsert(pks, rows)

    def _make(self, metric: Metric, lock: bool) -> None:
        try:
            self._build(metric, lock)
        except Exception:
            log.exception("catalog ANN build failed; exact search goes on")
        finally:
            self.building.discard(metric)

    def _build(self, metric: Metric, lock: bool) -> None:
        index = self.index
        with index.lock if lock else nullcontext():
            pks, matrix, ids, watermark = index.pks, index.matrix, index.ids, index.watermark
        path = self.path(metric)
        loaded = None if path is None else Graph.load(path, index.dim, metric)
        if loaded is None:
            graph = Graph(index.dim, metric, capacity=len(pks))
            graph.upsert(pks, matrix)
            changed = True
        else:
            graph, saved = loaded
            gone = np.setdiff1d(graph.keys(), pks)
            newer = ids > saved
            graph.remove(gone)
            graph.upsert(pks[newer], matrix[newer])
            changed = bool(len(gone) or newer.any())
        if path is not None and changed:
            graph.save(path, watermark, self.version)
        with index.lock if lock else nullcontext():
            newer = index.ids > watermark  # stored while this graph was made
            graph.upsert(index.pks[newer], index.matrix[newer])
            self.graphs[metric] = graph
