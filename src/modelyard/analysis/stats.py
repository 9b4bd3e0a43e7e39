"""Cell-type statistics over a neighbour graph: frequencies, the interaction count matrix, the pairwise
log-odds ratio and a permutation test of both.

Definitions (issue #16). For every stored neighbour pair (c, n) of the graph, ``M[type(c), type(n)] += 1``
and ``M[type(n), type(c)] += 1``, so ``M`` is symmetric. ``E = M / 2``, ``T`` is the total of ``E``,
``p_i = sum_j E[i, j] / T`` (the ``p_i`` sum to 1) and the log-odds ratio is
``ln((E[i, j] / T) / (p_i * p_j))``: 0 under random mixing, positive for pairs that touch more than chance.

The ``upper_triangle`` variant normalises by the total over ``i <= j`` only, as an older write-up did: its
``p_i`` sum to about 1.5 and every log-odds is shifted by the same constant ``ln(T_upper / T)`` (so enriched
pairs can come out negative). It is offered, by name, for comparison with results made that way.

The permutation test shuffles the types over the cells (seeded) and recounts: ``np.bincount`` over
``type[c] * K + type[n]`` of the graph's stored pairs, in chunks that stay in cache, with no graph work per
permutation. Bad input raises ``InvalidCells`` / ``ZeroFrequency`` (``analysis.errors``); nothing returns NaN
silently: a z-score the permutations cannot define (no spread, or a pair never seen) is NaN *and* listed in
``undefined``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from modelyard import extras
from modelyard.analysis.errors import InvalidCells, ZeroFrequency
from modelyard.analysis.params import MAX_PERMUTATIONS, MAX_TYPES, VARIANTS, Variant

try:
    from scipy import sparse
except ImportError as exc:  # the analysis extra is not installed
    raise extras.absent("analysis", __name__, exc) from exc

_PACKED_TYPES = 16  # up to this many types, three neighbours share one code (16**4 bins)
_THREADED_CELLS = 50_000  # from this many cells, permutations run in two threads
_CHUNK = 1 << 16  # cells per counting chunk: their codes stay in cache between the gather and the count

Counts = NDArray[np.int64]
Floats = NDArray[np.float64]


def check_types(types: Any, n_types: int, *, field: str = "types") -> NDArray[np.int32]:
    """``types`` as int32 cell types in ``[0, n_types)``; ``InvalidCells`` naming the rule otherwise."""
    if isinstance(n_types, bool) or not isinstance(n_types, int | np.integer):
        raise InvalidCells(f"n_types must be an integer, not {n_types!r}", field="n_types")
    if not 1 <= n_types <= MAX_TYPES:
        raise InvalidCells(f"n_types must be between 1 and {MAX_TYPES}, not {n_types}", field="n_types")
    arr = np.asarray(types)
    if arr.ndim != 1:
        raise InvalidCells(f"{field} must be one type per cell (1-D), not shape {arr.shape}", field=field)
    if arr.size == 0:
        raise InvalidCells(f"{field} is empty: there are no cells", field=field)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise InvalidCells(f"{field} must be whole numbers", field=field)
    elif arr.dtype.kind not in "iu":
        raise InvalidCells(f"{field} must be integers, not {arr.dtype}", field=field)
    low, high = arr.min(), arr.max()
    if low < 0:
        at = int(np.argmax(arr < 0))
        raise InvalidCells(f"{field}[{at}] is {arr[at]}: types must not be negative", field=field)
    if high >= n_types:
        at = int(np.argmax(arr >= n_types))
        raise InvalidCells(
            f"{field}[{at}] is {arr[at]}, not below the declared n_types of {n_types}", field=field
        )
    return arr.astype(np.int32)


def check_graph(graph: Any, n_cells: int) -> sparse.csr_array:
    """``graph`` as an n_cells x n_cells CSR array whose stored entries are the neighbour pairs."""
    if not sparse.issparse(graph):
        raise InvalidCells(
            "graph must be a scipy sparse matrix (neighbours.knn_graph / radius_graph)", field="graph"
        )
    csr = sparse.csr_array(graph)
    if csr.shape != (n_cells, n_cells):
        raise InvalidCells(
            f"graph is {csr.shape[0]} x {csr.shape[1]} but there are {n_cells} cells: lengths differ",
            field="graph",
        )
    if csr.nnz and (csr.indices.min() < 0 or csr.indices.max() >= n_cells):
        bad = int(csr.indices.min()) if csr.indices.min() < 0 else int(csr.indices.max())
        raise InvalidCells(f"graph names neighbour {bad}, out of range for {n_cells} cells", field="graph")
    if csr.nnz == 0:
        raise InvalidCells("graph has no neighbour pairs", field="graph")
    return csr


@dataclass(frozen=True, slots=True)
class Frequencies:
    """Cells of each type: ``counts[i]`` and ``fractions[i]`` (summing to 1)."""

    counts: Counts
    fractions: Floats


def frequencies(types: Any, n_types: int) -> Frequencies:
    """How many cells have each type, and what fraction of all cells."""
    t = check_types(types, n_types)
    counts = np.bincount(t, minlength=n_types).astype(np.int64)
    return Frequencies(counts, counts / counts.sum())


class _Pairs:
    """A graph's stored pairs ready for counting: sources as a broadcast when every cell has the same
    number of neighbours (a k-nearest graph), else repeated per row."""

    def __init__(self, csr: sparse.csr_array) -> None:
        n = csr.shape[0]
        degrees = np.diff(csr.indptr)
        self.n = n
        self.k = int(degrees[0]) if n and np.all(degrees == degrees[0]) else None
        self.dst = csr.indices.astype(np.int32, copy=False)
        self.src = None if self.k is not None else np.repeat(np.arange(n, dtype=np.int32), degrees)

    def directed(self, t: NDArray[np.uint8], n_types: int) -> Counts:
        """D[i, j]: stored pairs (c, n) with type(c) = i and type(n) = j."""
        if self.k is not None and self.k >= 3 and n_types <= _PACKED_TYPES:
            return self._directed_packed(t, n_types)
        bins = n_types * n_types
        code = np.uint16 if bins > 256 else np.uint8
        total = np.zeros(bins, dtype=np.int64)
        src_code = np.multiply(t, n_types, dtype=code)
        if self.k is not None:
            nbrs = self.dst.reshape(self.n, self.k)
            for a in range(0, self.n, _CHUNK):
                codes = src_code[a : a + _CHUNK, None] + t[nbrs[a : a + _CHUNK]]
                total += np.bincount(codes.ravel(), minlength=bins)
        else:
            assert self.src is not None
            step = _CHUNK * 8
            for a in range(0, len(self.dst), step):
                codes = src_code[self.src[a : a + step]] + t[self.dst[a : a + step]]
                total += np.bincount(codes, minlength=bins)
        return total.reshape(n_types, n_types)

    def _directed_packed(self, t: NDArray[np.uint8], n_types: int) -> Counts:
        """D of a k-nearest graph counting three neighbours per code: one bincount over
        (type(c), type(n1), type(n2), type(n3)) for every three neighbours of a cell (a third of the
        values to count, the costly step), then the three marginals added. Columns past the last full
        three are counted one per code."""
        kk = n_types
        bins = kk**4
        joint = np.zeros(bins, dtype=np.int64)
        pair = np.zeros(kk * kk, dtype=np.int64)
        src = t.astype(np.uint16) * np.uint16(kk**3)
        src_pair = np.multiply(t, kk, dtype=np.uint16)
        groups, rest = divmod(self.k or 0, 3)
        nbrs = self.dst.reshape(self.n, self.k or 0)
        w1, w2 = np.uint16(kk * kk), np.uint16(kk)
        for a in range(0, self.n, _CHUNK):
            nt = t[nbrs[a : a + _CHUNK]].astype(np.uint16)
            s = src[a : a + _CHUNK]
            for g in range(groups):
                c = s + nt[:, 3 * g] * w1 + nt[:, 3 * g + 1] * w2 + nt[:, 3 * g + 2]
                joint += np.bincount(c, minlength=bins)
            if rest:
                codes = src_pair[a : a + _CHUNK, None] + nt[:, 3 * groups :]
                pair += np.bincount(codes.ravel(), minlength=kk * kk)
        j = joint.reshape(kk, kk, kk, kk)
        d = j.sum(axis=(2, 3)) + j.sum(axis=(1, 3)) + j.sum(axis=(1, 2))
        out: Counts = d + pair.reshape(kk, kk)
        return out


def interaction_counts(graph: Any, types: Any, n_types: int) -> Counts:
    """The symmetric count matrix ``M``: each stored neighbour pair (c, n) adds 1 to
    ``M[type(c), type(n)]`` and 1 to ``M[type(n), type(c)]``."""
    t = check_types(types, n_types)
    d = _Pairs(check_graph(graph, len(t))).directed(t.astype(np.uint8), n_types)
    return d + d.T


def _normaliser(e: Floats, variant: Variant) -> float:
    if variant == "standard":
        return float(e.sum())
    if variant == "upper_triangle":
        return float(np.triu(e).sum())
    raise InvalidCells(
        f"unknown log-odds variant {variant!r} (one of {', '.join(VARIANTS)})", field="variant"
    )


def log_odds(m: Any, *, variant: Variant = "standard") -> Floats:
    """``ln((E / T) / (p_i p_j))`` of a count matrix ``M`` (module docstring). A pair never seen is
    ``-inf`` (actual 0); a pair whose theoretical frequency is 0 raises ``ZeroFrequency`` naming it."""
    counts = np.asarray(m)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.size == 0:
        raise InvalidCells(
            f"the count matrix must be square and non-empty, not {counts.shape}", field="counts"
        )
    if np.any(counts < 0):
        raise InvalidCells("the count matrix has negative counts", field="counts")
    if not np.array_equal(counts, counts.T):
        raise InvalidCells("the count matrix must be symmetric (both directions counted)", field="counts")
    e = counts.astype(np.float64) / 2.0
    total = _normaliser(e, variant)
    if total == 0:
        raise InvalidCells("there are no neighbour pairs to compare", field="counts")
    p = e.sum(axis=1) / total
    missing = [int(i) for i in np.flatnonzero(p == 0)]
    if missing:
        raise ZeroFrequency(missing[0], missing[0], missing)
    with np.errstate(divide="ignore"):
        return np.log((e / total) / np.outer(p, p))


def _log_odds_many(m: Counts, variant: Variant) -> Floats:
    """Log-odds of a stack of count matrices (permutations): -inf for an unseen pair, NaN where a type has
    no pairs in that permutation; both are caught as undefined by the caller."""
    e = m.astype(np.float64) / 2.0
    total = e.sum(axis=(1, 2)) if variant == "standard" else np.triu(e).sum(axis=(1, 2))
    p = e.sum(axis=2) / total[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        out: Floats = np.log((e / total[:, None, None]) / (p[:, :, None] * p[:, None, :]))
    return out


@dataclass(frozen=True, slots=True)
class Test:
    """One statistic against its permutations: ``z = (observed - mean) / std`` and the two-sided
    permutation p-value ``(1 + #{|perm - mean| >= |observed - mean|}) / (n_perms + 1)``."""

    observed: Floats
    mean: Floats
    std: Floats
    z: Floats
    p: Floats
    undefined: list[tuple[int, int]]  # pairs whose z and p are NaN: no spread, or never seen


def _test(observed: Floats, perms: Floats) -> Test:
    finite = np.all(np.isfinite(perms), axis=0) & np.isfinite(observed)
    safe = np.where(np.isfinite(perms), perms, 0.0)
    mean = safe.mean(axis=0)
    std = safe.std(axis=0)
    defined = finite & (std > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(defined, (np.where(finite, observed, 0.0) - mean) / std, np.nan)
        dev = np.abs(np.where(finite, observed, 0.0) - mean)
        extreme = (np.abs(safe - mean) >= dev - 1e-12 * np.maximum(1.0, dev)).sum(axis=0)
    p = np.where(defined, (1.0 + extreme) / (len(perms) + 1.0), np.nan)
    upper = np.triu(~defined)
    undefined = [(int(i), int(j)) for i, j in zip(*np.nonzero(upper), strict=True)]
    return Test(observed, mean, std, z, p, undefined)


@dataclass(frozen=True, slots=True)
class Interactions:
    """Everything ``interactions`` computes for one sample."""

    n_types: int
    n_cells: int
    frequencies: Frequencies
    counts: Counts
    log_odds: Floats
    variant: Variant
    n_perms: int
    seed: int
    counts_test: Test | None = None
    log_odds_test: Test | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict; non-finite numbers become ``null`` (their pairs are in ``undefined``)."""
        out: dict[str, Any] = {
            "n_cells": self.n_cells,
            "n_types": self.n_types,
            "frequencies": {
                "counts": self.frequencies.counts.tolist(),
                "fractions": self.frequencies.fractions.tolist(),
            },
            "counts": self.counts.tolist(),
            "log_odds": _json(self.log_odds),
            "variant": self.variant,
            "n_perms": self.n_perms,
            "seed": self.seed,
        }
        for name, test in (("counts_test", self.counts_test), ("log_odds_test", self.log_odds_test)):
            if test is not None:
                out[name] = {
                    "z": _json(test.z),
                    "p": _json(test.p),
                    "mean": _json(test.mean),
                    "undefined": [list(pair) for pair in test.undefined],
                }
        return out


def _json(values: Floats) -> list[list[float | None]]:
    return [[float(v) if np.isfinite(v) else None for v in row] for row in values]


def permutations(graph: Any, types: Any, n_types: int, *, n_perms: int, seed: int) -> Counts:
    """The count matrices ``M`` of ``n_perms`` shuffles of the types (seeded), shape (n_perms, K, K)."""
    t = check_types(types, n_types)
    pairs = _Pairs(check_graph(graph, len(t)))
    return _permuted(pairs, t.astype(np.uint8), n_types, n_perms, seed)


def _permuted(pairs: _Pairs, t: NDArray[np.uint8], n_types: int, n_perms: int, seed: int) -> Counts:
    """``n_perms`` shuffles in two threads (numpy's shuffle, gathers and arithmetic release the GIL). Each
    thread has its own half of the permutations and its own generator spawned from ``seed``, so the result
    does not depend on how the threads are scheduled."""
    out = np.empty((n_perms, n_types, n_types), dtype=np.int64)
    halves = [range(0, n_perms // 2), range(n_perms // 2, n_perms)]
    streams = np.random.SeedSequence(seed).spawn(len(halves))

    def run(part: range, stream: np.random.SeedSequence) -> None:
        rng = np.random.default_rng(stream)
        shuffled = t.copy()
        for i in part:
            rng.shuffle(shuffled)
            d = pairs.directed(shuffled, n_types)
            out[i] = d + d.T

    if len(t) < _THREADED_CELLS:
        for part, stream in zip(halves, streams, strict=True):
            run(part, stream)
        return out
    with ThreadPoolExecutor(max_workers=len(halves), thread_name_prefix="permutations") as pool:
        for done in [pool.submit(run, part, stream) for part, stream in zip(halves, streams, strict=True)]:
            done.result()
    return out


def interactions(
    graph: Any,
    types: Any,
    n_types: int,
    *,
    n_perms: int = 100,
    seed: int = 0,
    variant: Variant = "standard",
) -> Interactions:
    """Frequencies, ``M``, log-odds and (``n_perms`` > 0) the permutation test of counts and log-odds."""
    t = check_types(types, n_types)
    if isinstance(n_perms, bool) or not isinstance(n_perms, int) or not 0 <= n_perms <= MAX_PERMUTATIONS:
        raise InvalidCells(f"n_perms must be an integer from 0 to {MAX_PERMUTATIONS}", field="n_perms")
    pairs = _Pairs(check_graph(graph, len(t)))
    small = t.astype(np.uint8)
    d = pairs.directed(small, n_types)
    m = d + d.T
    observed = log_odds(m, variant=variant)
    counts_test = odds_test = None
    if n_perms:
        perms = _permuted(pairs, small, n_types, n_perms, seed)
        counts_test = _test(m.astype(np.float64), perms.astype(np.float64))
        odds_test = _test(observed, _log_odds_many(perms, variant))
    freq = frequencies(t, n_types)
    return Interactions(n_types, len(t), freq, m, observed, variant, n_perms, seed, counts_test, odds_test)
