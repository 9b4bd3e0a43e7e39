"""The per-cell table of a label mask measured by tiles: each tile's per-label sums (area, centroid
coordinates, intensity of every channel) added up, so an image and mask as large as a whole scan are
never read whole. Gives what ``segment.measure_cells`` gives on an image that fits in memory."""

from __future__ import annotations

import numpy as np

from modelyard.analysis.images import Multichannel, tile_grid
from modelyard.analysis.segment import Cells, as_unit, label_stats
from modelyard.errors import InvalidInput

TILE = 512


def _grown(arr: np.ndarray, size: int) -> np.ndarray:
    if len(arr) >= size:
        return arr
    out = np.zeros((size, *arr.shape[1:]), dtype=arr.dtype)
    out[: len(arr)] = arr
    return out


def measure_tiled(image: Multichannel, mask: Multichannel, *, tile: int = TILE) -> tuple[Cells, int]:
    """The cells of ``mask`` (one channel of integer labels, 0 the background) measured on ``image``, and
    how many pixels they cover; ``InvalidInput`` for a mask that is not one or not the image's size."""
    c, h, w = image.shape
    if mask.shape[0] != 1 or mask.dtype.kind not in "iu":
        raise InvalidInput(
            f"a label mask has one channel of integer labels, not {mask.shape[0]} of {mask.dtype}",
            field="inputs",
        )
    if mask.shape[1:] != (h, w):
        raise InvalidInput(f"the mask is {mask.shape[1:]} but the image is {(h, w)}", field="inputs")
    area = np.zeros(1, np.int64)
    sums = np.zeros((1, 2 + c), np.float64)  # y, x, then every channel
    for t in tile_grid(h, w, tile, 0):
        labels = mask.read(t.y0, t.y1, t.x0, t.x1, channel=0)
        if labels.size and labels.min() < 0:
            raise InvalidInput("a label mask holds integer labels >= 0", field="inputs")
        got, cy, cx, mean = label_stats(labels, as_unit(image.read(t.y0, t.y1, t.x0, t.x1)))
        n = len(got)
        area, sums = _grown(area, n), _grown(sums, n)
        area[:n] += got
        sums[:n, 0] += (cy + t.y0) * got
        sums[:n, 1] += (cx + t.x0) * got
        sums[:n, 2:] += mean.reshape(n, c) * got[:, None]
    ids = np.flatnonzero(area)
    ids = ids[ids > 0]
    per = area[ids].astype(np.float64)
    cells = Cells(
        image.channels, ids.astype(np.int64), sums[ids, 0] / per, sums[ids, 1] / per,
        area[ids].astype(np.int64), (sums[ids, 2:] / per[:, None]).reshape(len(ids), c),
    )  # fmt: skip
    return cells, int(area[1:].sum())
