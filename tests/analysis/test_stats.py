"""Statistics against values worked out by hand, written here (not produced by the code under test)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy import sparse

from modelyard.analysis import stats
from modelyard.analysis.errors import InvalidCells, ZeroFrequency


def graph(n: int, pairs: list[tuple[int, int]]) -> sparse.csr_array:
    """A CSR graph whose stored entries are exactly ``pairs`` (c, n)."""
    rows, cols = zip(*pairs, strict=True)
    return sparse.csr_array((np.ones(len(pairs), np.int8), (rows, cols)), shape=(n, n))


def both_ways(n: int, edges: list[tuple[int, int]]) -> sparse.csr_array:
    return graph(n, edges + [(b, a) for a, b in edges])


# A path 0-1-2-3 with types [0, 0, 1, 1], every edge stored both ways (6 entries):
#   entries by type: 0->0 twice (0-1, 1-0), 0->1 once (1-2), 1->0 once (2-1), 1->1 twice (2-3, 3-2)
#   D = [[2, 1], [1, 2]], M = D + D^T = [[4, 2], [2, 4]], E = M / 2 = [[2, 1], [1, 2]], T = 6
#   p = [3/6, 3/6] = [0.5, 0.5]
#   log-odds[0,0] = ln((2/6) / 0.25) = ln(4/3); log-odds[0,1] = ln((1/6) / 0.25) = ln(2/3)
#   upper_triangle: T' = 2 + 1 + 2 = 5, p' = [3/5, 3/5]: log-odds'[0,0] = ln((2/5) / 0.36) = ln(10/9),
#   log-odds'[0,1] = ln((1/5) / 0.36) = ln(5/9); each one ln(5/6) below the standard value.
PATH = both_ways(4, [(0, 1), (1, 2), (2, 3)])
PATH_TYPES = [0, 0, 1, 1]


def test_counts_of_a_path_stored_both_ways() -> None:
    assert stats.interaction_counts(PATH, PATH_TYPES, 2).tolist() == [[4, 2], [2, 4]]


def test_log_odds_of_a_path_stored_both_ways() -> None:
    got = stats.log_odds(np.array([[4, 2], [2, 4]]))
    want = [[math.log(4 / 3), math.log(2 / 3)], [math.log(2 / 3), math.log(4 / 3)]]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_upper_triangle_variant_values_and_its_constant_shift() -> None:
    m = np.array([[4, 2], [2, 4]])
    upper = stats.log_odds(m, variant="upper_triangle")
    want = [[math.log(10 / 9), math.log(5 / 9)], [math.log(5 / 9), math.log(10 / 9)]]
    np.testing.assert_allclose(upper, want, rtol=1e-12)
    np.testing.assert_allclose(upper - stats.log_odds(m), math.log(5 / 6), rtol=1e-12)


def test_upper_triangle_shift_is_one_constant_on_any_matrix() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(1, 50, size=(5, 5))
    m = a + a.T
    e = m / 2
    shift = stats.log_odds(m, variant="upper_triangle") - stats.log_odds(m)
    np.testing.assert_allclose(shift, math.log(np.triu(e).sum() / e.sum()), rtol=1e-12)
    assert shift.max() < 0  # the older normalisation pushes every pair down


# Directed entries 0->1, 1->2, 2->1 with types [0, 1, 1] (a k-nearest graph keeps one-way pairs):
#   D = [[0, 1], [0, 2]], M = [[0, 1], [1, 4]], E = [[0, .5], [.5, 2]], T = 3, p = [1/6, 5/6]
#   log-odds[0,0] = ln(0) = -inf (never seen), [0,1] = ln((0.5/3) / (5/36)) = ln(6/5),
#   [1,1] = ln((2/3) / (25/36)) = ln(24/25)
def test_one_way_pairs_count_in_both_directions() -> None:
    g = graph(3, [(0, 1), (1, 2), (2, 1)])
    m = stats.interaction_counts(g, [0, 1, 1], 2)
    assert m.tolist() == [[0, 1], [1, 4]]
    odds = stats.log_odds(m)
    assert odds[0, 0] == -math.inf
    np.testing.assert_allclose(odds[0, 1], math.log(6 / 5), rtol=1e-12)
    np.testing.assert_allclose(odds[1, 1], math.log(24 / 25), rtol=1e-12)


def test_frequencies_count_cells_of_each_type() -> None:
    f = stats.frequencies([2, 0, 2, 2], 4)
    assert f.counts.tolist() == [1, 0, 3, 0]
    assert f.fractions.tolist() == [0.25, 0.0, 0.75, 0.0]


@pytest.mark.parametrize(("k", "n_types"), [(1, 4), (3, 4), (4, 16), (6, 10), (7, 17)])
def test_a_k_nearest_graph_and_an_irregular_one_count_alike(k: int, n_types: int) -> None:
    """The regular-degree fast paths (three neighbours per code, and one) and the general one give the M
    counted here pair by pair."""
    rng = np.random.default_rng(5)
    n = 300
    nbrs = np.array([rng.choice(np.delete(np.arange(n), i), k, replace=False) for i in range(n)])
    regular = graph(n, [(i, int(j)) for i in range(n) for j in nbrs[i]])
    extra = graph(n, [(i, int(j)) for i in range(n) for j in nbrs[i]] + [(0, 5)])
    t = rng.integers(0, n_types, n)
    m_regular = stats.interaction_counts(regular, t, n_types)
    m_extra = stats.interaction_counts(extra, t, n_types)
    d = np.zeros((n_types, n_types), np.int64)
    for i in range(n):
        for j in nbrs[i]:
            d[t[i], t[j]] += 1
    assert m_regular.tolist() == (d + d.T).tolist()
    d[t[0], t[5]] += 1
    assert m_extra.tolist() == (d + d.T).tolist()


def test_permutation_test_of_a_three_cell_path() -> None:
    """Types [0, 0, 1] on the path 0-1-2 (both ways). The type-1 cell sits at 0, 1 or 2 with chance 1/3:
    M[0,1] is 2, 4 or 2, so its mean is 8/3 and its std sqrt((4 + 16 + 4)/3 - 64/9) = sqrt(8/9); observed
    (at 2) is 2: z = (2 - 8/3) / sqrt(8/9) = -1/sqrt(2), and every arrangement is at least as far from the
    mean, so p = 1."""
    g = both_ways(3, [(0, 1), (1, 2)])
    r = stats.interactions(g, [0, 0, 1], 2, n_perms=4000, seed=1)
    assert r.counts[0, 1] == 2
    assert r.counts_test is not None
    assert r.counts_test.mean[0, 1] == pytest.approx(8 / 3, abs=0.05)
    assert r.counts_test.z[0, 1] == pytest.approx(-1 / math.sqrt(2), abs=0.05)
    assert r.counts_test.p[0, 1] == 1.0


def test_permutations_are_seeded() -> None:
    g = both_ways(6, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0), (0, 3)])
    t = [0, 1, 2, 0, 1, 2]
    a = stats.permutations(g, t, 3, n_perms=20, seed=7)
    b = stats.permutations(g, t, 3, n_perms=20, seed=7)
    c = stats.permutations(g, t, 3, n_perms=20, seed=8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert all(np.array_equal(p, p.T) for p in a)
    assert set(a.sum(axis=(1, 2)).tolist()) == {2 * g.nnz}  # every entry counted, both directions


def test_undefined_z_is_nan_listed_and_null_in_json() -> None:
    """Two cells of different types: every shuffle gives the same M, so no z can be defined."""
    r = stats.interactions(both_ways(2, [(0, 1)]), [0, 1], 2, n_perms=10)
    assert r.counts_test is not None and r.log_odds_test is not None
    assert np.isnan(r.counts_test.z).all()
    assert r.counts_test.undefined == [(0, 0), (0, 1), (1, 1)]
    doc = r.to_json()
    assert doc["counts_test"]["z"] == [[None, None], [None, None]]
    assert doc["log_odds"][0][0] is None  # ln(0): a pair never seen
    assert doc["counts_test"]["undefined"] == [[0, 0], [0, 1], [1, 1]]


# ------------------------------------------------------------------------------------- strict validation


@pytest.mark.parametrize(
    ("types", "n_types", "field", "says"),
    [
        ([], 3, "types", "empty"),
        ([0, 3, 1], 3, "types", "types[1] is 3, not below the declared n_types of 3"),
        ([0, -1, 1], 3, "types", "types[1] is -1: types must not be negative"),
        ([0.5, 1.0], 3, "types", "whole numbers"),
        (["a", "b"], 3, "types", "integers"),
        ([[0, 1]], 3, "types", "1-D"),
        ([0, 1], 0, "n_types", "between 1 and 255"),
        ([0, 1], 2.0, "n_types", "must be an integer"),
    ],
)
def test_bad_types_are_refused(types: object, n_types: object, field: str, says: str) -> None:
    with pytest.raises(InvalidCells, match=re.escape(says)) as info:
        stats.frequencies(types, n_types)  # type: ignore[arg-type]
    assert info.value.field == field
    assert info.value.status == 422


def test_neighbour_index_out_of_range_is_refused() -> None:
    bad = sparse.csr_array((np.ones(2, np.int8), np.array([1, 7]), np.array([0, 1, 2, 2])), shape=(3, 3))
    with pytest.raises(InvalidCells, match="neighbour 7, out of range for 3 cells") as info:
        stats.interaction_counts(bad, [0, 1, 0], 2)
    assert info.value.field == "graph"


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(InvalidCells, match="graph is 4 x 4 but there are 3 cells"):
        stats.interaction_counts(PATH, [0, 1, 0], 2)


def test_a_graph_that_is_not_sparse_or_has_no_pairs_is_refused() -> None:
    with pytest.raises(InvalidCells, match="scipy sparse"):
        stats.interaction_counts([[0, 1], [1, 0]], [0, 1], 2)
    with pytest.raises(InvalidCells, match="no neighbour pairs"):
        stats.interaction_counts(sparse.csr_array((2, 2), dtype=np.int8), [0, 1], 2)


def test_zero_theoretical_frequency_names_the_pair() -> None:
    """Type 1 of 3 has no cell, so p_1 = 0 and p_1 * p_j = 0 for every j."""
    with pytest.raises(ZeroFrequency, match=r"type pair \(1, 1\) is zero: type\(s\) 1 ") as info:
        stats.interactions(PATH, [0, 0, 2, 2], 3, n_perms=0)
    assert info.value.extra == {"pair": [1, 1], "missing_types": [1]}
    assert info.value.code == "zero-frequency"


@pytest.mark.parametrize(
    ("m", "says"),
    [
        ([[1, 2], [3, 1]], "symmetric"),
        ([[1, -2], [-2, 1]], "negative"),
        ([[0, 0], [0, 0]], "no neighbour pairs"),
        ([1, 2], "square"),
    ],
)
def test_bad_count_matrices_are_refused(m: list[object], says: str) -> None:
    with pytest.raises(InvalidCells, match=says):
        stats.log_odds(np.array(m))


def test_unknown_variant_and_bad_n_perms_are_refused() -> None:
    with pytest.raises(InvalidCells, match="unknown log-odds variant 'half'"):
        stats.log_odds(np.array([[4, 2], [2, 4]]), variant="half")  # type: ignore[arg-type]
    with pytest.raises(InvalidCells, match="n_perms"):
        stats.interactions(PATH, PATH_TYPES, 2, n_perms=-1)
