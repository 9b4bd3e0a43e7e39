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

from modelyard import extras

try:
    from scipy import ndimage
    from scipy.spatial import cKDTree
except ImportError as exc:  # the analysis extra is not installed
    raise extras.absent("analysis", __name__, exc) from exc

_BOXES = 256  # up to this many components with several seeds, each is flooded in its own box
_REACH = 32  # nuclei up to about this radius get the squared distance below; larger shapes, scipy's


def split_nuclei(fg: np.ndarray, seed_distance: int) -> np.ndarray:
    """Int32 labels of the nuclei in the boolean mask ``fg``: seeds numbered from 1, highest peak first,
    then the seedless components in raster order."""
    near = squared_distance(fg)
    dist = ndimage.distance_transform_edt(fg) if near is None else near
    seeds = peaks(dist, seed_distance)
    labels = flood(dist, fg, seeds)
    rest, found = ndimage.label(fg & (labels == 0))
    if found:
        labels[rest > 0] = rest[rest > 0] + len(seeds)
    return labels


def squared_distance(fg: np.ndarray) -> np.ndarray | None:
    """The squared Euclidean distance of every pixel of ``fg`` to the nearest background pixel (int16),
    or None when a pixel lies farther than ``_REACH`` from the background.

    Peaks and watershed only compare distances, so the squared distance gives them the same result as
    the distance itself, and small nuclei make it cheap: with ``g`` the distance to the background along
    the column, the answer is the least ``g(y, x')² + (x - x')²`` over ``x'``, and the columns farther
    than the largest answer so far cannot lower it, so a few shifted minima of whole rows settle it
    (scipy's exact transform costs about four times as much on a tile of nuclei)."""
    cap = _REACH + 1
    column = _column_distance(fg, cap)
    if column is None:
        return None
    column *= column
    out = column.copy()
    dx = 1
    while dx * dx <= int(out.max(initial=0)):
        if dx > _REACH:
            return None
        step = np.int16(dx * dx)
        np.minimum(out[:, dx:], column[:, :-dx] + step, out=out[:, dx:])
        np.minimum(out[:, :-dx], column[:, dx:] + step, out=out[:, :-dx])
        dx += 1
    return out


def _column_distance(fg: np.ndarray, cap: int) -> np.ndarray | None:
    """Int16 distance of every pixel to the nearest background pixel of its column, at most ``cap``
    (also where the column has no background); None for images too tall for int16 positions."""
    h = fg.shape[0]
    if 2 * h + cap >= np.iinfo(np.int16).max:
        return None
    at = np.arange(h, dtype=np.int16)[:, None]
    far = np.int16(h + cap)
    before = np.maximum.accumulate(np.where(fg, -far, at), axis=0)
    after = np.minimum.accumulate(np.where(fg, at + far, at)[::-1], axis=0)[::-1]
    out: np.ndarray = np.minimum(np.minimum(at - before, after - at), np.int16(cap))
    return out


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
