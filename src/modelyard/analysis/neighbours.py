"""Neighbourhoods of cells as a sparse graph: the ``k`` nearest or all within a ``radius`` (scipy's
``cKDTree``), returned as an n x n CSR array whose stored entries are the neighbour pairs (c, n), the
cell itself excluded. A k-nearest graph has exactly ``k`` entries per row (a pair nearest to each other is
stored both ways); a radius graph is symmetric. ``stats`` counts the stored pairs."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from modelyard import extras
from modelyard.analysis.errors import InvalidCells
from modelyard.analysis.params import MAX_K

try:
    from scipy import sparse
    from scipy.spatial import cKDTree
except ImportError as exc:  # the analysis extra is not installed
    raise extras.absent("analysis", __name__, exc) from exc


def check_coords(coords: Any) -> NDArray[np.float64]:
    """``coords`` as an (n, 2) or (n, 3) float array of finite values; ``InvalidCells`` otherwise."""
    arr = np.asarray(coords, dtype=np.float64) if not isinstance(coords, np.ndarray) else coords
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise InvalidCells(
            f"coords must be one (x, y) or (x, y, z) row per cell, not shape {arr.shape}", field="coords"
        )
    if arr.shape[0] == 0:
        raise InvalidCells("coords is empty: there are no cells", field="coords")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        at = int(np.argmax(~np.all(np.isfinite(arr), axis=1)))
        raise InvalidCells(f"coords[{at}] is not a finite position", field="coords")
    return arr


def knn_graph(coords: Any, k: int, *, workers: int = -1) -> sparse.csr_array:
    """Each cell's ``k`` nearest other cells (ties broken by the tree), as CSR rows of exactly ``k``."""
    xy = check_coords(coords)
    n = len(xy)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= MAX_K:
        raise InvalidCells(f"k must be an integer from 1 to {MAX_K}, not {k!r}", field="k")
    if k >= n:
        raise InvalidCells(f"k is {k} but there are only {n} cells: each needs {k} others", field="k")
    _, found = cKDTree(xy).query(xy, k=k + 1, workers=workers)
    found = found.astype(np.int32)
    # the cell itself is normally first; with duplicate positions it may come later: drop it wherever it is
    own = found == np.arange(n, dtype=np.int32)[:, None]
    keep = ~own
    keep[~own.any(axis=1), -1] = False  # a row that did not list itself loses its farthest instead
    indices = found[keep]
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    data = np.ones(len(indices), dtype=np.int8)
    return sparse.csr_array((data, indices, indptr), shape=(n, n))


def radius_graph(coords: Any, radius: float) -> sparse.csr_array:
    """Every pair of cells at most ``radius`` apart, stored both ways (symmetric)."""
    xy = check_coords(coords)
    n = len(xy)
    if (
        isinstance(radius, bool)
        or not isinstance(radius, int | float)
        or not radius > 0
        or not np.isfinite(radius)
    ):
        raise InvalidCells(f"radius must be a positive number, not {radius!r}", field="radius")
    pairs = cKDTree(xy).query_pairs(float(radius), output_type="ndarray").astype(np.int32)
    rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
    cols = np.concatenate([pairs[:, 1], pairs[:, 0]])
    data = np.ones(len(rows), dtype=np.int8)
    return sparse.csr_array(sparse.coo_array((data, (rows, cols)), shape=(n, n)))
