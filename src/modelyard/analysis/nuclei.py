"""Foreground split into nuclei: seeds at the peaks of the distance transform, a watershed from them, and
a component that got no seed as one cell.

The result is scikit-image's ``peak_local_max(dist, min_distance=d, threshold_abs=0.5,
exclude_border=False)`` followed by ``watershed(-dist, seeds, mask=foreground)``, with the work that
cannot change it left out:

- peaks: the candidates are the foreground pixels equal to the maximum of their (2d + 1)² window, highest
  first. scikit-image then keeps them greedily, dropping any closer than ``d`` (Chebyshev) to one kept, in a
  Python loop over every candidate, several times over. A candidate with no other within ``d`` is kept
  whatever the order, so only the candidates that have a close one (the plateaus of the transform, a
  handful a tile) go through that loop.
- watershed: the flood never leaves a connected component of the mask, so a component with one seed is
  that seed's cell whole; only components with several seeds are flooded, each in its own box (all in one
  call when there are many). Where two basins of one component reach a pixel at the same height, the
  flood's queue decides, and that queue now holds less: such tie pixels may go to the other neighbour.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

_BOXES = 256  # up to this many components with several seeds, each is flooded in its own box


def split_nuclei(fg: np.ndarray, seed_distance: int) -> np.ndarray:
    """Int32 labels of the nuclei in the boolean mask ``fg``: seeds numbered from 1, highest peak first,
    then the seedless components in raster order."""
    dist = ndimage.distance_transform_edt(fg)
    seeds = peaks(dist, seed_distance)
    labels = flood(dist, fg, seeds)
    rest, found = ndimage.label(fg & (labels == 0))
    if found:
        labels[rest > 0] = rest[rest > 0] + len(seeds)
    return labels


def peaks(dist: np.ndarray, min_distance: int) -> np.ndarray:
    """(n, 2) coordinates of the peaks of ``dist`` over 0.5, highest first, no two closer than
    ``min_distance`` (as ``skimage.feature.peak_local_max`` with ``exclude_border=False``)."""
    if dist.size == 1:
        top = dist > 0.5
    else:
        top = dist == ndimage.maximum_filter(dist, size=2 * min_distance + 1, mode="nearest")
        if np.all(top):  # a flat image has no peak
            return np.zeros((0, dist.ndim), dtype=np.intp)
        top &= dist > 0.5
    where = np.nonzero(top)
    order = np.argsort(-dist[where], kind="stable")
    coords = np.transpose(where)[order]
    return _spaced(coords, min_distance) if min_distance > 1 else coords


def _spaced(coords: np.ndarray, spacing: int) -> np.ndarray:
    """``coords`` (best first) without those closer than ``spacing`` (Chebyshev) to a better one kept."""
    if len(coords) < 2:
        return coords
    close = cKDTree(coords).query_pairs(spacing - 0.5, p=np.inf, output_type="ndarray")
    if not len(close):
        return coords
    close = close[np.lexsort((close[:, 1], close[:, 0]))]  # (better, worse) pairs, better ascending
    dropped = np.zeros(len(coords), dtype=bool)
    for better, worse in close.tolist():
        if not dropped[better]:  # final: only a pair listed earlier can drop ``better``
            dropped[worse] = True
    return coords[~dropped]


def flood(dist: np.ndarray, fg: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The watershed of ``-dist`` from ``seeds`` (labelled 1..n in order) within ``fg``."""
    from skimage.segmentation import watershed

    if not len(seeds):
        return np.zeros(fg.shape, dtype=np.int32)
    components, n = ndimage.label(fg)
    at = tuple(seeds.T)
    of_seed = components[at]
    per = np.bincount(of_seed, minlength=n + 1)
    ids = np.arange(1, len(seeds) + 1, dtype=np.int32)
    alone = per[of_seed] == 1
    lookup = np.zeros(n + 1, dtype=np.int32)
    lookup[of_seed[alone]] = ids[alone]
    labels: np.ndarray = lookup[components]
    shared = np.flatnonzero(per >= 2)
    if not len(shared):
        return labels
    markers = np.zeros(fg.shape, dtype=np.int32)
    markers[tuple(seeds[~alone].T)] = ids[~alone]
    if len(shared) > _BOXES:
        inside = (per >= 2)[components]
        flooded = watershed(-dist, markers, mask=inside)  # type: ignore[no-untyped-call]
        labels[inside] = flooded[inside]
        return labels
    boxes = ndimage.find_objects(components)
    for c in shared.tolist():
        box = boxes[c - 1]
        inside = components[box] == c
        flooded = watershed(-dist[box], np.where(inside, markers[box], 0), mask=inside)  # type: ignore[no-untyped-call]
        labels[box][inside] = flooded[inside]
    return labels
