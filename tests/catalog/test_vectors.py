"""The pure parts of search: the exact kNN index against numpy, vectors split out of inference values and
put back, and colour query vectors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.catalog.colours import bins_of, parse_hex, query_vector
from modelyard.catalog.fields import merge_vectors, split_vectors
from modelyard.catalog.vectors import Allowed, VectorIndex
from modelyard.errors import InvalidQuery


def reference(mat: np.ndarray, pks: np.ndarray, q: np.ndarray, metric: str, k: int) -> list[int]:
    if metric == "cosine":
        norms = np.linalg.norm(mat, axis=1)
        d = 1 - (mat @ q) / np.where(norms == 0, 1, norms) / np.linalg.norm(q)
    elif metric == "dot":
        d = -(mat @ q)
    else:
        d = np.linalg.norm(mat - q, axis=1)
    return [int(pks[i]) for i in np.lexsort((pks, d))[:k]]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 60),
    k=st.integers(1, 12),
    metric=st.sampled_from(["cosine", "dot", "l2"]),
    keep=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**16),
)
def test_search_is_the_exact_k_nearest_among_allowed_rows(
    n: int, k: int, metric: Any, keep: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    mat = rng.normal(size=(n, 8)).astype(np.float32)
    pks = rng.permutation(10 * n)[:n].astype(np.int64)
    index = VectorIndex(dim=8)
    index.add(pks.tolist(), mat)
    q = rng.normal(size=8).astype(np.float32)
    allowed = pks[rng.random(n) < keep]
    got = [pk for pk, _ in index.search(q, k, metric, allowed=Allowed("f", np.sort(allowed)))]
    rows = np.isin(pks, allowed)
    want = reference(mat[rows], pks[rows], q, metric, k)
    assert len(got) == min(k, int(rows.sum()))
    assert set(got) == set(want)  # ties in float32 may order differently; the set is exact


def test_adding_a_record_again_replaces_its_vector_and_exclude_leaves_it_out() -> None:
    index = VectorIndex(dim=2)
    index.add([1, 2], np.array([[1, 0], [0, 1]], dtype=np.float32))
    index.add([1], np.array([[0, 1]], dtype=np.float32))
    assert len(index.pks) == 2
    assert index.vector_of(1).tolist() == [0, 1]  # type: ignore[union-attr]
    hits = index.search(np.array([0, 1], dtype=np.float32), 5, "l2", exclude=2)
    assert [pk for pk, _ in hits] == [1]


def test_a_filter_finds_the_rows_of_records_added_after_it_last_ran() -> None:
    index = VectorIndex(dim=2)
    index.add([5, 1], np.array([[1, 0], [0, 1]], dtype=np.float32))
    q = np.array([1, 1], dtype=np.float32)
    assert {pk for pk, _ in index.search(q, 5, "dot", allowed=Allowed("a", np.array([1, 5])))} == {1, 5}
    index.add([3], np.array([[2, 2]], dtype=np.float32))
    hits = index.search(q, 5, "dot", allowed=Allowed("b", np.array([1, 3])))
    assert [pk for pk, _ in hits] == [3, 1]


@pytest.mark.parametrize(
    "values",
    [
        list(range(20)),
        {"embedding": [0.5] * 16, "average": "#ffffff", "top": [{"hex": "#fff", "fraction": 1.0}]},
        {"a": {"b": [1.0] * 32, "c": [1, 2, 3]}, "label": "x"},
        {"short": [1, 2, 3]},
    ],
)
def test_vectors_split_out_and_merge_back_unchanged(values: Any) -> None:
    stored, found = split_vectors(values)
    vectors = {path: np.frombuffer(data, dtype=np.float32).tolist() for path, data, _ in found}
    assert merge_vectors(stored, vectors) == values
    assert all(dim >= 16 for _, _, dim in found)


@pytest.mark.parametrize(
    ("text", "rgb"), [("#ff0000", (255, 0, 0)), ("0f0", (0, 255, 0)), ("#C0392B", (192, 57, 43))]
)
def test_hex_colours_parse(text: str, rgb: tuple[int, int, int]) -> None:
    assert parse_hex(text, "c") == rgb


@pytest.mark.parametrize("text", ["red", "#ff00", "#gggggg", ""])
def test_unknown_colours_are_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidQuery) as info:
        parse_hex(text, "colour.colours.x")
    assert info.value.field == "colour.colours.x"


def test_a_colour_query_scores_near_bins_above_far_ones() -> None:
    q = query_vector({"#ff0000": 1.0}, 10)
    red, crimson, blue = ((9 * 10 + 0) * 10 + 0), ((6 * 10 + 0) * 10 + 1), ((0 * 10 + 1) * 10 + 8)
    assert q[red] > q[crimson] > q[blue] >= 0
    assert abs(float(np.linalg.norm(q)) - 1.0) < 1e-5
    assert bins_of(1000) == 10
    with pytest.raises(InvalidQuery):
        bins_of(999)
