"""Cell typing: each cell gets a type in ``[0, n_types)`` from its marker intensities, by k-means or a
Gaussian mixture (scikit-learn, seeded, so the same cells give the same types), or from types the user
supplies (checked like any other). Markers are standardised per column first, so a bright channel does not
outweigh a dim one. Types are renumbered by cluster size (0 is the largest), so they do not depend on the
algorithm's internal order."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from modelyard.analysis.errors import InvalidCells
from modelyard.analysis.params import MAX_TYPES, TYPING_METHODS, TypingMethod
from modelyard.analysis.stats import check_types


def check_markers(markers: Any, n_types: int) -> NDArray[np.float64]:
    """``markers`` as an (n_cells, n_markers) float array of finite values, enough cells for ``n_types``."""
    try:
        arr = np.asarray(markers, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidCells("markers must be numbers, one row per cell", field="markers") from None
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise InvalidCells(
            f"markers must be one row of intensities per cell, not shape {arr.shape}", field="markers"
        )
    if arr.shape[0] == 0:
        raise InvalidCells("markers is empty: there are no cells", field="markers")
    if not np.all(np.isfinite(arr)):
        at = int(np.argmax(~np.all(np.isfinite(arr), axis=1)))
        raise InvalidCells(f"markers[{at}] has a value that is not finite", field="markers")
    if isinstance(n_types, bool) or not isinstance(n_types, int) or not 1 <= n_types <= MAX_TYPES:
        raise InvalidCells(f"n_types must be an integer from 1 to {MAX_TYPES}", field="n_types")
    if arr.shape[0] < n_types:
        raise InvalidCells(f"{arr.shape[0]} cells cannot make {n_types} types", field="n_types")
    return arr


def cluster(
    markers: Any, n_types: int, *, method: TypingMethod = "kmeans", seed: int = 0
) -> NDArray[np.int32]:
    """One type per cell from its markers, by ``method`` (``kmeans`` or ``gmm``), seeded."""
    x = check_markers(markers, n_types)
    spread = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    if method == "kmeans":
        from sklearn.cluster import KMeans

        labels = KMeans(n_clusters=n_types, n_init=4, random_state=seed).fit_predict(x)
    elif method == "gmm":
        from sklearn.mixture import GaussianMixture

        labels = GaussianMixture(n_components=n_types, random_state=seed).fit(x).predict(x)
    else:
        raise InvalidCells(
            f"unknown typing method {method!r} (one of {', '.join(TYPING_METHODS)})", field="method"
        )
    return _by_size(np.asarray(labels), n_types)


def _by_size(labels: NDArray[Any], n_types: int) -> NDArray[np.int32]:
    """Labels renumbered so type 0 is the largest cluster (ties by the old label)."""
    sizes = np.bincount(labels, minlength=n_types)
    order = np.lexsort((np.arange(n_types), -sizes))
    rank = np.empty(n_types, dtype=np.int32)
    rank[order] = np.arange(n_types, dtype=np.int32)
    out: NDArray[np.int32] = rank[labels]
    return out


def given(types: Any, n_types: int) -> NDArray[np.int32]:
    """User-supplied types, checked as the statistics check them."""
    return check_types(types, n_types)
