"""The ANN index beside the exact one: recall against numpy with and without filters, a filter never
returning fewer than k when k pass, and the graph persisted, loaded, caught up and rebuilt when missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelyard.catalog import ann, vectors
from modelyard.catalog.ann import AnnConfig
from modelyard.catalog.vectors import Allowed, VectorIndex

N, DIM, K = 3000, 24, 10


def data(n: int = N, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(16, DIM)).astype(np.float32)
    return (centres[rng.integers(0, 16, n)] + 0.4 * rng.normal(size=(n, DIM))).astype(np.float32)


def indexed(folder: Path | None, vecs: np.ndarray, pks: np.ndarray, name: str = "c/f@1") -> VectorIndex:
    index = VectorIndex(dim=DIM)
    index.ann = ann.Ann(AnnConfig(folder, threshold=100, background=False), name, index)
    index.add(pks.tolist(), vecs[: len(pks)], (pks + 1).tolist())
    index.watermark = int(pks.max()) + 1
    return index


def truth(vecs: np.ndarray, pks: np.ndarray, q: np.ndarray, keep: np.ndarray | None = None) -> set[int]:
    rows = np.arange(len(pks)) if keep is None else np.flatnonzero(np.isin(pks, keep))
    unit = vecs[rows] / np.linalg.norm(vecs[rows], axis=1, keepdims=True)
    d = 1 - unit @ (q / np.linalg.norm(q))
    return set(pks[rows[np.argsort(d, kind="stable")[:K]]].tolist())


def test_ann_recall_against_numpy_with_and_without_filters(monkeypatch: pytest.MonkeyPatch) -> None:
    vecs, pks = data(), np.arange(N, dtype=np.int64) * 3 + 7
    index = indexed(None, vecs, pks)
    rng = np.random.default_rng(5)
    half = np.sort(pks[rng.random(N) < 0.5])
    monkeypatch.setattr(vectors, "EXACT_ROWS", 100)  # a 50% filter goes through the graph
    plain, filtered = [], []
    for _ in range(40):
        q = vecs[rng.integers(0, N)] + 0.2 * rng.normal(size=DIM).astype(np.float32)
        got = [pk for pk, _ in index.search(q, K, "cosine")]
        plain.append(len(set(got) & truth(vecs, pks, q)) / K)
        got = [pk for pk, _ in index.search(q, K, "cosine", allowed=Allowed("half", half))]
        assert len(got) == K and set(got) <= set(half.tolist())
        filtered.append(len(set(got) & truth(vecs, pks, q, half)) / K)
    assert index.ann is not None and "cosine" in index.ann.graphs  # the graph answered
    assert np.mean(plain) >= 0.98 and np.mean(filtered) >= 0.98


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_the_graph_answers_with_the_exact_searchs_distances(metric: ann.Metric) -> None:
    vecs, pks = data(), np.arange(N, dtype=np.int64) * 2 + 1
    index = indexed(None, vecs, pks)
    rng = np.random.default_rng(8)
    for _ in range(10):
        q = vecs[rng.integers(0, N)] + 0.2 * rng.normal(size=DIM).astype(np.float32)
        got = dict(index.search(q, K, metric))
        want = dict(index.search(q, K, metric, exact=True))
        assert index.ann is not None and metric in index.ann.graphs  # the graph answered
        assert list(got.values()) == sorted(got.values())  # nearest first
        shared = set(got) & set(want)
        assert len(shared) >= K - 1
        for pk in shared:
            assert got[pk] == pytest.approx(want[pk], rel=1e-4, abs=1e-4)


def test_a_filter_the_graph_cannot_reach_still_gets_every_passing_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vecs, pks = data(), np.arange(N, dtype=np.int64)
    index = indexed(None, vecs, pks)
    monkeypatch.setattr(vectors, "EXACT_ROWS", 0)  # every filter through the graph, however few pass
    few = np.array([5, 1700, 2999], dtype=np.int64)
    got = index.search(vecs[0], K, "cosine", allowed=Allowed("few", few))
    assert sorted(pk for pk, _ in got) == [5, 1700, 2999]
    twelve = np.sort(np.random.default_rng(2).choice(pks, 12, replace=False))
    got = index.search(vecs[0], K, "l2", allowed=Allowed("twelve", twelve), exclude=int(twelve[0]))
    assert len(got) == K and int(twelve[0]) not in {pk for pk, _ in got}


def test_the_graph_is_saved_loaded_and_caught_up_and_rebuilt_when_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vecs, pks = data(), np.arange(N, dtype=np.int64)
    first = indexed(tmp_path, vecs, pks[:2500])
    first.search(vecs[0], K, "cosine")
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and any(f.endswith("-cosine.json") for f in files)

    loads: list[Any] = []
    real = ann.Graph.load.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(
        ann.Graph, "load", classmethod(lambda cls, *a: loads.append(real(cls, *a)) or loads[-1])
    )
    # another process: records 0-99 deleted since the file was written, 2500-2999 stored since
    later = indexed(tmp_path, vecs[100:], pks[100:])
    hits = later.search(vecs[2900], K, "cosine")
    assert loads and loads[0] is not None  # loaded from the file, not built again
    assert hits[0][0] == 2900  # caught up with what was stored since
    graph = later.ann.graphs["cosine"]  # type: ignore[union-attr]
    assert not {int(k) for k in graph.search(vecs[5], 50)[0]} & set(range(100))  # deleted ones left out

    apart = np.zeros((1, DIM), dtype=np.float32)
    apart[0, 0] = 100.0  # a direction no other row has
    later.add([3000], apart, [9999])  # kept in step: a new row reaches the graph at once
    assert graph.search(apart[0], 1)[0][0] == 3000

    for p in tmp_path.iterdir():
        p.unlink()
    rebuilt = indexed(tmp_path, vecs, pks)
    assert rebuilt.search(vecs[42], 1, "cosine")[0][0] == 42
    assert len(list(tmp_path.iterdir())) == 2  # written again


def test_a_graph_saved_with_other_parameters_is_built_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vecs, pks = data(), np.arange(N, dtype=np.int64)
    with monkeypatch.context() as older:  # a graph an older release saved, with a narrower degree
        older.setattr(ann, "M", 8)
        indexed(tmp_path, vecs, pks).search(vecs[0], K, "cosine")
    saved = next(tmp_path.glob("*-cosine.hnsw"))
    assert ann.Graph.load(saved, DIM, "cosine") is None  # not trusted as this release's graph

    index = indexed(tmp_path, vecs, pks)
    assert index.search(vecs[7], 1, "cosine")[0][0] == 7
    assert index.ann is not None and index.ann.graphs["cosine"].index.M == ann.M  # built anew
    loaded = ann.Graph.load(saved, DIM, "cosine")  # and saved over the old file
    assert loaded is not None and loaded[0].index.M == ann.M
