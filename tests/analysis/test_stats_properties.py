"""Properties of the statistics on random cells: symmetry, normalisation, random mixing near 0, the
permutation test's calibration; and the neighbour graphs and cell typing they are built on."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from modelyard.analysis import neighbours, stats, typing
from modelyard.analysis.errors import InvalidCells


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(8, 80),
    k=st.integers(1, 5),
    n_types=st.integers(1, 6),
)
def test_counts_log_odds_and_z_are_symmetric(seed: int, n: int, k: int, n_types: int) -> None:
    rng = np.random.default_rng(seed)
    g = neighbours.knn_graph(rng.uniform(0, 10, (n, 2)), k)
    t = rng.integers(0, n_types, n)
    t[:n_types] = np.arange(n_types)  # every type present: no zero frequency
    r = stats.interactions(g, t, n_types, n_perms=5, seed=seed)
    assert np.array_equal(r.counts, r.counts.T)
    assert r.counts.sum() == 2 * g.nnz
    finite = np.isfinite(r.log_odds)
    assert np.array_equal(finite, finite.T)
    np.testing.assert_allclose(r.log_odds[finite], r.log_odds.T[finite])
    assert r.counts_test is not None
    np.testing.assert_array_equal(np.isnan(r.counts_test.z), np.isnan(r.counts_test.z.T))
    e = r.counts / 2
    np.testing.assert_allclose((e.sum(axis=1) / e.sum()).sum(), 1.0)


def test_random_mixing_gives_log_odds_near_zero() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    g = neighbours.knn_graph(rng.uniform(0, 100, (n, 2)), 6)
    odds = stats.log_odds(stats.interaction_counts(g, rng.integers(0, 3, n), 3))
    assert np.abs(odds).max() < 0.05


def test_segregated_types_are_enriched_with_themselves() -> None:
    """Left half type 0, right half type 1: same-type pairs positive, mixed negative, and significant."""
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, (2000, 2))
    t = (xy[:, 0] > 50).astype(int)
    r = stats.interactions(neighbours.knn_graph(xy, 6), t, 2, n_perms=50, seed=2)
    assert r.log_odds[0, 0] > 0 and r.log_odds[1, 1] > 0 and r.log_odds[0, 1] < 0
    assert r.counts_test is not None and r.log_odds_test is not None
    assert r.counts_test.z[0, 0] > 10 and r.counts_test.z[0, 1] < -10
    assert r.log_odds_test.z[0, 1] < -10
    assert r.counts_test.p[0, 1] == pytest.approx(1 / 51)


def test_permutation_p_values_are_roughly_uniform_on_random_types() -> None:
    """200 samples of random types on random cells: the p-values of one pair pass a (loose) KS test."""
    rng = np.random.default_rng(11)
    p_counts, p_odds = [], []
    for seed in range(200):
        xy = rng.uniform(0, 20, (150, 2))
        r = stats.interactions(neighbours.knn_graph(xy, 4), rng.integers(0, 3, 150), 3, n_perms=99, seed=seed)
        assert r.counts_test is not None and r.log_odds_test is not None
        p_counts.append(r.counts_test.p[0, 1])
        p_odds.append(r.log_odds_test.p[0, 1])
    for p in (p_counts, p_odds):
        assert scipy_stats.kstest(p, "uniform").pvalue > 0.001
        assert 0.35 < float(np.mean(p)) < 0.65
        assert 0.02 < float(np.mean(np.asarray(p) <= 0.05)) < 0.12


# ---------------------------------------------------------------------------------------------- neighbours


def test_knn_graph_rows_are_the_k_nearest_others() -> None:
    xy = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [7.0, 0.0]])
    g = neighbours.knn_graph(xy, 2)
    assert g.shape == (4, 4) and g.nnz == 8
    assert [sorted(g.indices[g.indptr[i] : g.indptr[i + 1]].tolist()) for i in range(4)] == [
        [1, 2],
        [0, 2],
        [0, 1],
        [1, 2],
    ]


def test_knn_graph_never_lists_a_cell_as_its_own_neighbour_even_at_one_position() -> None:
    xy = np.zeros((5, 2))
    g = neighbours.knn_graph(xy, 3)
    rows = np.repeat(np.arange(5), 3)
    assert g.nnz == 15 and not np.any(g.indices == rows)


def test_radius_graph_is_symmetric_and_exact() -> None:
    xy = np.array([[0.0, 0.0], [1.0, 0.0], [2.5, 0.0], [10.0, 0.0]])
    g = neighbours.radius_graph(xy, 1.5)
    assert sorted(zip(*g.nonzero(), strict=True)) == [(0, 1), (1, 0), (1, 2), (2, 1)]


@pytest.mark.parametrize(
    ("call", "field", "says"),
    [
        (lambda: neighbours.knn_graph(np.zeros((0, 2)), 1), "coords", "empty"),
        (lambda: neighbours.knn_graph(np.zeros((3, 2)), 3), "k", "only 3 cells"),
        (lambda: neighbours.knn_graph(np.zeros((3, 2)), 0), "k", "from 1 to"),
        (lambda: neighbours.knn_graph(np.array([[0, 1], [np.nan, 2.0]]), 1), "coords", r"coords\[1\]"),
        (lambda: neighbours.knn_graph(np.zeros(3), 1), "coords", "shape"),
        (lambda: neighbours.radius_graph(np.zeros((3, 2)), -1.0), "radius", "positive"),
    ],
)
def test_bad_neighbourhoods_are_refused(call: object, field: str, says: str) -> None:
    with pytest.raises(InvalidCells, match=says) as info:
        call()  # type: ignore[operator]
    assert info.value.field == field


# ------------------------------------------------------------------------------------------------- typing


@pytest.mark.parametrize("method", ["kmeans", "gmm"])
def test_clustering_finds_marker_groups_seeded(method: typing.Method) -> None:
    """300 cells bright in marker A, 200 in B, 100 in neither: three types, largest first."""
    rng = np.random.default_rng(4)
    groups = np.repeat([0, 1, 2], [300, 200, 100])
    centres = np.array([[10.0, 0.0], [0.0, 10.0], [0.0, 0.0]])
    markers = centres[groups] + rng.normal(0, 0.5, (600, 2))
    types = typing.cluster(markers, 3, method=method, seed=0)
    assert types.tolist() == groups.tolist()
    assert np.array_equal(types, typing.cluster(markers, 3, method=method, seed=0))


def test_bad_markers_and_methods_are_refused() -> None:
    with pytest.raises(InvalidCells, match="2 cells cannot make 3 types"):
        typing.cluster(np.ones((2, 2)), 3)
    with pytest.raises(InvalidCells, match=r"markers\[1\] has a value that is not finite"):
        typing.cluster(np.array([[1.0], [np.inf]]), 1)
    with pytest.raises(InvalidCells, match="unknown typing method 'tree'"):
        typing.cluster(np.ones((4, 2)), 2, method="tree")  # type: ignore[arg-type]
    with pytest.raises(InvalidCells, match="not below the declared n_types of 2"):
        typing.given([0, 2], 2)
