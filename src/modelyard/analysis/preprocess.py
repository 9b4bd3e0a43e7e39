"""Image preprocessing, tile by tile: per-channel normalisation to 0..1 between two percentiles of the
whole image (from one pass of per-channel histograms, so exact for integer images), then background
subtraction (a white top-hat: the image minus its grey opening by a square, which keeps anything smaller
than the square and removes slow background). Each tile reads its core plus a margin of twice the
opening's radius, so a tiled run gives exactly what an untiled one does.

``channel_stats`` makes the one statistics pass (it also counts saturated pixels per channel, which the
quality checks report); ``preprocess_image`` returns a small image in memory; ``preprocess_file`` writes a
large one as a tiled OME-TIFF, holding one tile at a time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelyard import extras
from modelyard.analysis.images import (
    ArrayImage,
    Multichannel,
    Tile,
    saturation_level,
    tile_grid,
    write_tiled,
)

try:
    from scipy import ndimage
except ImportError as exc:  # the analysis extra is not installed
    raise extras.absent("analysis", __name__, exc) from exc

STATS_TILE = 2048  # fixed, so the statistics do not depend on the tile size a run chooses
EXACT_TILE = 512  # the statistics of an integer image come from histograms: any tiles give them exactly
SAMPLE_VALUES = 4_000_000  # float images: percentiles from about this many values per channel
OUT_DTYPE = np.uint16  # preprocessed images are stored as 0..1 scaled to uint16
OUT_SCALE = 65535.0


@dataclass(frozen=True, slots=True)
class Preprocess:
    """How to preprocess: normalise between percentiles ``low`` and ``high`` of each channel, then
    subtract the background under structures smaller than ``background_radius`` pixels (0: none)."""

    low: float = 1.0
    high: float = 99.8
    background_radius: int = 25

    @property
    def margin(self) -> int:
        """How far a pixel's output depends on its neighbours (the tile overlap preprocessing needs)."""
        return 2 * self.background_radius

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Preprocess:
        """From a stage's ``params`` (already checked by ``params.preprocess_problems``)."""
        base = cls()
        return cls(
            float(params.get("low_percentile", base.low)),
            float(params.get("high_percentile", base.high)),
            int(params.get("background_radius", base.background_radius)),
        )


@dataclass(frozen=True, slots=True)
class ChannelStats:
    """Per channel: the normalisation bounds, and how many pixels sit at the type's maximum."""

    low: np.ndarray
    high: np.ndarray
    saturated: np.ndarray
    pixels: int

    def as_dict(self, channels: tuple[str, ...]) -> dict[str, Any]:
        """JSON-able, by channel name."""
        return {
            name: {
                "low": float(self.low[i]),
                "high": float(self.high[i]),
                "saturated_fraction": float(self.saturated[i]) / max(self.pixels, 1),
            }
            for i, name in enumerate(channels)
        }


def channel_stats(image: Multichannel, pre: Preprocess) -> ChannelStats:
    """One pass over ``image`` by tiles: each channel's percentile bounds and saturated pixel count."""
    c, h, w = image.shape
    exact = image.dtype.kind == "u" and image.dtype.itemsize <= 2
    hist = np.zeros((c, 65536), dtype=np.int64)
    samples: list[list[np.ndarray]] = [[] for _ in range(c)]
    step = max(1, int(np.sqrt(h * w / SAMPLE_VALUES)))
    saturated = np.zeros(c, dtype=np.int64)
    level = saturation_level(image.dtype)
    # integer images: exact whatever the tiles, so small ones (bincount widens every value to 8 bytes)
    for tile in tile_grid(h, w, EXACT_TILE if exact else STATS_TILE, 0):
        for i in range(c):
            values = image.read(tile.y0, tile.y1, tile.x0, tile.x1, channel=i)
            saturated[i] += int(np.count_nonzero(values >= level))
            if exact:
                hist[i] += np.bincount(values.ravel(), minlength=65536)
            else:  # the stats tiles are fixed, so the sample does not depend on a run's tile size
                samples[i].append(values[::step, ::step].ravel().astype(np.float64))
    low, high = np.zeros(c), np.zeros(c)
    for i in range(c):
        if exact:
            low[i], high[i] = _hist_percentiles(hist[i], (pre.low, pre.high))
        else:
            low[i], high[i] = np.percentile(np.concatenate(samples[i]), (pre.low, pre.high))
    return ChannelStats(low, high, saturated, h * w)


def _hist_percentiles(counts: np.ndarray, qs: tuple[float, float]) -> tuple[float, float]:
    """Percentiles (the lower value, as ``np.percentile(..., method='lower')``) from a histogram."""
    cumulative = np.cumsum(counts)
    total = int(cumulative[-1])
    out = []
    for q in qs:
        rank = int(np.floor(q / 100 * (total - 1)))
        out.append(float(np.searchsorted(cumulative, rank, side="right")))
    return out[0], out[1]


def normalise(block: np.ndarray, low: float, high: float) -> np.ndarray:
    """One channel scaled so ``low`` is 0 and ``high`` is 1, clipped (all 0 for a flat channel)."""
    out = block.astype(np.float32)
    if high <= low:
        return np.zeros_like(out)
    out -= np.float32(low)
    out *= np.float32(1.0 / (high - low))
    return np.clip(out, 0.0, 1.0, out=out)


def subtract_background(block: np.ndarray, radius: int) -> np.ndarray:
    """One channel minus its grey opening by a (2r+1)² square: separable 1-D minimum and maximum
    filters, so the cost does not grow with the radius."""
    if radius <= 0:
        return block
    size = 2 * radius + 1
    opened = ndimage.minimum_filter1d(block, size, axis=0, mode="reflect")
    opened = ndimage.minimum_filter1d(opened, size, axis=1, mode="reflect")
    opened = ndimage.maximum_filter1d(opened, size, axis=0, mode="reflect")
    opened = ndimage.maximum_filter1d(opened, size, axis=1, mode="reflect")
    return np.asarray(np.subtract(block, opened, out=opened))


def preprocess_window(window: np.ndarray, channel: int, stats: ChannelStats, pre: Preprocess) -> np.ndarray:
    """One channel's window, normalised then background-subtracted (float32, 0..1)."""
    out = normalise(window, float(stats.low[channel]), float(stats.high[channel]))
    return subtract_background(out, pre.background_radius)


def _channel_tiles(
    image: Multichannel, stats: ChannelStats, pre: Preprocess, size: int, workers: int = 1
) -> Iterator[np.ndarray]:
    """The preprocessed core of every channel's tiles, channel after channel, computed on ``workers``
    threads (the filters release the GIL) with at most ``2 * workers`` tiles in flight."""
    c, h, w = image.shape
    grid = tile_grid(h, w, size, pre.margin)

    def one(i: int, tile: Tile) -> np.ndarray:
        window = image.read(tile.wy0, tile.wy1, tile.wx0, tile.wx1, channel=i)
        return preprocess_window(window, i, stats, pre)[tile.core_in_window]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[np.ndarray]] = deque()
        for i in range(c):
            for tile in grid:
                pending.append(pool.submit(one, i, tile))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def preprocess_image(
    image: Multichannel,
    pre: Preprocess,
    *,
    tile: int = 2048,
    stats: ChannelStats | None = None,
    workers: int = 1,
) -> tuple[ArrayImage, ChannelStats]:
    """The preprocessed image in memory (float32, 0..1, same channel names) and the statistics used."""
    stats = stats or channel_stats(image, pre)
    c, h, w = image.shape
    out = np.empty((c, h, w), dtype=np.float32)
    grid = tile_grid(h, w, tile, pre.margin)
    cores = _channel_tiles(image, stats, pre, tile, workers)
    for i in range(c):
        for t in grid:
            core = next(cores)
            out[i, t.y0 : t.y1, t.x0 : t.x1] = core
    return ArrayImage(out, image.channels), stats


def preprocess_file(
    image: Multichannel,
    out: Path,
    pre: Preprocess,
    *,
    tile: int = 1024,
    stats: ChannelStats | None = None,
    workers: int = 1,
) -> ChannelStats:
    """Preprocess ``image`` into a tiled OME-TIFF at ``out`` (uint16, 0..1 scaled to 0..65535), one tile
    in memory at a time. ``tile`` must be a multiple of 16 (the TIFF tile size)."""
    if tile % 16:
        raise ValueError(f"tile must be a multiple of 16, not {tile}")
    stats = stats or channel_stats(image, pre)

    def scaled() -> Iterator[np.ndarray]:
        for core in _channel_tiles(image, stats, pre, tile, workers):
            yield (core * OUT_SCALE + 0.5).astype(OUT_DTYPE)

    write_tiled(out, scaled(), shape=image.shape, dtype=OUT_DTYPE, size=tile, channels=image.channels)
    return stats
