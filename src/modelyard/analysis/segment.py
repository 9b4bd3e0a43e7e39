"""Nuclei segmentation, tile by tile: foreground from one channel (smoothed and thresholded, or a
registered ONNX model's probability map), split into cells by a watershed on the distance transform, a
label mask and a per-cell table (id, centroid, area, mean intensity of every channel).

Each tile reads its core plus a margin of about two nucleus diameters and keeps the cells whose centroid
falls in its core, so a cell cut by a tile border is segmented whole by the tile that owns it and counted
once. The mask is stitched from the cores: a pixel of a cell another tile owns takes that tile's id for it
(matched by centroid). The threshold is one for the whole image (Otsu on windows at fixed places), so
tiling does not change it.

Tiles run on threads of this process, or on a Dask cluster (``scheduler``: an address or a
``distributed.Client``); results are taken in tile order with a bounded number in flight, and a large
mask is written straight to a tiled TIFF, so memory stays bounded by a few tiles.
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelyard import extras
from modelyard.analysis.images import Multichannel, Tile, channel_index, tile_grid, write_tiled

try:
    from scipy import ndimage
except ImportError as exc:  # the analysis extra is not installed
    raise extras.absent("analysis", __name__, exc) from exc

Predict = Callable[[np.ndarray], np.ndarray]
SAMPLE_WINDOW = 512
SAMPLE_GRID = 4


@dataclass(frozen=True, slots=True)
class Segmentation:
    """How to find nuclei: in ``channel`` (name or index), cells about ``diameter`` pixels across,
    foreground above ``threshold`` (Otsu when None) after a Gaussian of ``smooth_sigma``, or, with
    ``method="onnx"``, where a model's probability is above ``probability``; cells under ``min_area``
    pixels are dropped."""

    channel: str | int = 0
    diameter: int = 12
    threshold: float | None = None
    smooth_sigma: float = 1.0
    min_area: int = 10
    method: str = "threshold"
    probability: float = 0.5

    @property
    def margin(self) -> int:
        """The tile overlap: a cell owned by a tile lies whole inside its window."""
        return 2 * self.diameter + int(np.ceil(3 * self.smooth_sigma))

    @property
    def seed_distance(self) -> int:
        """The least distance between two cells' seeds."""
        return max(2, self.diameter // 3)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Segmentation:
        """From a stage's ``params`` (already checked by ``params.segment_problems``)."""
        base = cls()
        return cls(
            params.get("channel", base.channel),
            int(params.get("diameter", base.diameter)),
            None if params.get("threshold") is None else float(params["threshold"]),
            float(params.get("smooth_sigma", base.smooth_sigma)),
            int(params.get("min_area", base.min_area)),
            str(params.get("method", base.method)),
            float(params.get("probability", base.probability)),
        )


@dataclass(slots=True)
class Cells:
    """The per-cell table: global ids from 1, centroids (row ``y``, column ``x``), areas in pixels and
    mean intensity per channel (``mean[:, c]``)."""

    channels: tuple[str, ...]
    id: np.ndarray
    y: np.ndarray
    x: np.ndarray
    area: np.ndarray
    mean: np.ndarray

    def __len__(self) -> int:
        return len(self.id)

    def columns(self) -> dict[str, np.ndarray]:
        """Columns by name: ``id``, ``y``, ``x``, ``area`` and ``mean_<channel>`` for each channel."""
        cols = {"id": self.id, "y": self.y, "x": self.x, "area": self.area}
        return cols | {f"mean_{name}": self.mean[:, i] for i, name in enumerate(self.channels)}

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-able dict per cell."""
        cols = {k: v.tolist() for k, v in self.columns().items()}
        return [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]

    def parquet(self) -> bytes:
        """The table as a Parquet file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        buf = pa.BufferOutputStream()
        pq.write_table(pa.table(self.columns()), buf)
        return bytes(buf.getvalue().to_pybytes())


def label_stats(labels: np.ndarray, data: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per label 0..max: area, centroid row and column, and the mean of each channel of ``data``
    (C, h, w) as an (n, C) array; one ``bincount`` per figure."""
    flat = labels.ravel().astype(np.int64, copy=False)
    n = int(flat.max()) if flat.size else 0
    h, w = labels.shape
    area = np.bincount(flat, minlength=n + 1)
    safe = np.maximum(area, 1)
    cy = np.bincount(flat, np.repeat(np.arange(h, dtype=np.float64), w), minlength=n + 1) / safe
    cx = np.bincount(flat, np.tile(np.arange(w, dtype=np.float64), h), minlength=n + 1) / safe
    mean = np.stack([np.bincount(flat, ch.ravel(), minlength=n + 1) / safe for ch in data], axis=1)
    return area, cy, cx, mean


def measure_cells(image: Multichannel, mask: np.ndarray) -> Cells:
    """The table of the cells a label mask holds (ids as in the mask), measured on ``image``, which is
    read whole: for images that fit in memory (the tiled ``segment`` measures as it goes)."""
    c, h, w = image.shape
    if mask.shape != (h, w):
        raise ValueError(f"the mask is {mask.shape} but the image is {(h, w)}")
    if mask.size and (mask.min() < 0 or mask.dtype.kind not in "iu"):
        raise ValueError("a label mask holds integer labels >= 0")
    area, cy, cx, mean = label_stats(mask, as_unit(image.read(0, h, 0, w)))
    ids = np.flatnonzero(area)
    ids = ids[ids > 0]
    return Cells(
        image.channels, ids.astype(np.int64), cy[ids], cx[ids], area[ids].astype(np.int64),
        mean[ids].reshape(len(ids), c),
    )  # fmt: skip


@dataclass(slots=True)
class Segmented:
    """What a segmentation found: the cells, the mask (in memory, or where it was written), the
    threshold used, and figures the quality checks read."""

    cells: Cells
    mask: np.ndarray | None
    mask_path: Path | None
    threshold: float
    covered_pixels: int
    pixels: int
    focus: float
    tiles: int = 0
    unmatched_pixels: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class TileCells:
    """One tile's result: local labels of its core and a row per local cell."""

    index: int
    core: np.ndarray
    ids: np.ndarray
    y: np.ndarray
    x: np.ndarray
    area: np.ndarray
    mean: np.ndarray
    owned: np.ndarray
    lap_sum: float
    lap_sq: float
    lap_n: int


def as_unit(window: np.ndarray) -> np.ndarray:
    """A window as float32, integer types scaled so their maximum is 1."""
    if window.dtype.kind in "ui":
        return window.astype(np.float32) * np.float32(1.0 / np.iinfo(window.dtype).max)
    return window.astype(np.float32, copy=False)


def _split(fg: np.ndarray, cfg: Segmentation) -> np.ndarray:
    """Foreground split into cells: a watershed of the distance transform from its peaks; a component
    that got no seed becomes one cell."""
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    dist = ndimage.distance_transform_edt(fg)
    peaks = peak_local_max(  # type: ignore[no-untyped-call]
        dist, min_distance=cfg.seed_distance, threshold_abs=0.5, exclude_border=False
    )
    markers = np.zeros(fg.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    labels = np.asarray(watershed(-dist, markers, mask=fg), dtype=np.int32)  # type: ignore[no-untyped-call]
    rest, found = ndimage.label(fg & (labels == 0))
    if found:
        labels[rest > 0] = rest[rest > 0] + len(peaks)
    return labels


def foreground(
    channel: np.ndarray, cfg: Segmentation, threshold: float, predict: Predict | None
) -> np.ndarray:
    """Where the nuclei are: the smoothed channel over ``threshold``, or the model's probability over
    ``cfg.probability``."""
    if predict is not None:
        prob = np.asarray(predict(channel[None, None].astype(np.float32)))
        if prob.size != channel.size:
            raise ValueError(
                f"the segmentation model returned {prob.shape} for a {channel.shape} tile; "
                "it must return one probability per pixel"
            )
        return prob.reshape(channel.shape) > cfg.probability
    smooth = ndimage.gaussian_filter(channel, cfg.smooth_sigma) if cfg.smooth_sigma else channel
    return np.asarray(smooth > threshold)


def segment_tile(
    window: np.ndarray, tile: Tile, nucleus: int, cfg: Segmentation, threshold: float, predict: Predict | None
) -> TileCells:
    """Segment one tile's window (C, h, w; any numeric type) and measure its cells."""
    data = as_unit(window)
    labels = _split(foreground(data[nucleus], cfg, threshold, predict), cfg)
    area, cy, cx, mean = label_stats(labels, data)
    cy, cx = cy + tile.wy0, cx + tile.wx0
    ids = np.arange(len(area))
    keep = (ids > 0) & (area >= cfg.min_area)
    owned = keep & (cy >= tile.y0) & (cy < tile.y1) & (cx >= tile.x0) & (cx < tile.x1)
    lookup = np.where(keep, ids, 0)
    core = lookup[labels[tile.core_in_window]].astype(np.int32)
    lap = ndimage.laplace(data[nucleus])[tile.core_in_window].astype(np.float64)
    return TileCells(
        tile.index, core, ids[keep], cy[keep], cx[keep], area[keep], mean[keep], owned[keep],
        float(lap.sum()), float((lap * lap).sum()), int(lap.size),
    )  # fmt: skip


def otsu_threshold(image: Multichannel, nucleus: int, cfg: Segmentation) -> float:
    """One threshold for the whole image: Otsu over the smoothed channel in windows at fixed places (the
    whole image when small), so it does not depend on how the image is tiled."""
    from skimage.filters import threshold_otsu

    _, h, w = image.shape
    if h * w <= (SAMPLE_WINDOW * SAMPLE_GRID) ** 2:
        spots = [(0, h, 0, w)]
    else:
        ys = np.linspace(0, max(h - SAMPLE_WINDOW, 0), SAMPLE_GRID).astype(int)
        xs = np.linspace(0, max(w - SAMPLE_WINDOW, 0), SAMPLE_GRID).astype(int)
        spots = [(y, min(y + SAMPLE_WINDOW, h), x, min(x + SAMPLE_WINDOW, w)) for y in ys for x in xs]
    values = []
    for y0, y1, x0, x1 in spots:
        chan = as_unit(image.read(y0, y1, x0, x1, channel=nucleus))
        values.append((ndimage.gaussian_filter(chan, cfg.smooth_sigma) if cfg.smooth_sigma else chan).ravel())
    sample = np.concatenate(values)
    if sample.min() == sample.max():
        return float(sample.max())
    return float(threshold_otsu(sample))  # type: ignore[no-untyped-call]


def _results(
    image: Multichannel,
    grid: list[Tile],
    run: Callable[[np.ndarray, Tile], TileCells],
    *,
    workers: int,
    scheduler: Any,
) -> Iterator[TileCells]:
    """Each tile's result in tile order, at most ``2 * workers`` tiles in flight."""
    client = _client(scheduler)
    pool = ThreadPoolExecutor(max_workers=workers) if client is None else None
    pending: deque[Any] = deque()
    try:
        for tile in grid:
            window = image.read(tile.wy0, tile.wy1, tile.wx0, tile.wx1)
            if client is not None:
                pending.append(client.submit(run, window, tile, pure=False))
            else:
                assert pool is not None
                pending.append(pool.submit(run, window, tile))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        if pool is not None:
            for future in pending:
                if isinstance(future, Future):
                    future.cancel()
            pool.shutdown(wait=True)
        if client is not None and client is not scheduler:
            client.close()


def _client(scheduler: Any) -> Any:
    """A Dask client for ``scheduler`` (an address), the client itself, or None for local threads."""
    if scheduler is None:
        return None
    if isinstance(scheduler, str):
        from distributed import Client

        return Client(scheduler, set_as_default=False)  # type: ignore[no-untyped-call]
    return scheduler


class _Stash:
    """Tiles' core labels until the ids are known: in memory, or in a temporary folder."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.kept: dict[int, np.ndarray] = {}

    def put(self, index: int, core: np.ndarray) -> None:
        if self.folder is None:
            self.kept[index] = core
        else:
            np.save(self.folder / f"{index}.npy", core)

    def take(self, index: int) -> np.ndarray:
        if self.folder is None:
            return self.kept.pop(index)
        path = self.folder / f"{index}.npy"
        core = np.load(path)
        path.unlink()
        return np.asarray(core)


def segment(
    image: Multichannel,
    cfg: Segmentation,
    *,
    tile: int = 1024,
    predict: Predict | None = None,
    mask_path: Path | None = None,
    workers: int = 1,
    scheduler: Any = None,
) -> Segmented:
    """Segment ``image`` by tiles of ``tile`` pixels; the mask is returned in memory, or written to
    ``mask_path`` as a tiled uint32 TIFF (``tile`` then a multiple of 16). ``predict`` (a model's
    probability map, ``method="onnx"``) runs on this process's threads, never on a Dask cluster."""
    nucleus = channel_index(image, cfg.channel, "params.channel")
    if cfg.method == "onnx" and predict is None:
        raise ValueError("method onnx needs the model's predict function")
    if predict is not None and scheduler is not None:
        raise ValueError("a segmentation model runs in this process; leave scheduler unset")
    _, h, w = image.shape
    threshold = cfg.threshold if cfg.threshold is not None else otsu_threshold(image, nucleus, cfg)
    grid = tile_grid(h, w, tile, cfg.margin)
    use = predict if cfg.method == "onnx" else None

    def run(window: np.ndarray, t: Tile) -> TileCells:
        return segment_tile(window, t, nucleus, cfg, threshold, use)

    with tempfile.TemporaryDirectory(prefix="modelyard-segment-") as tmp:
        stash = _Stash(Path(tmp) if mask_path is not None else None)
        tables: list[TileCells] = []
        for result in _results(image, grid, run, workers=workers, scheduler=scheduler):
            stash.put(result.index, result.core)
            result.core = np.empty(0, np.int32)
            tables.append(result)
        return _stitch(image, cfg, grid, tables, stash, threshold, mask_path, tile)


def _stitch(
    image: Multichannel,
    cfg: Segmentation,
    grid: list[Tile],
    tables: list[TileCells],
    stash: _Stash,
    threshold: float,
    mask_path: Path | None,
    tile: int,
) -> Segmented:
    """Global ids for the owned cells (tile order), each tile's core relabelled, the mask assembled."""
    c, h, w = image.shape
    offsets = np.cumsum([0] + [int(t.owned.sum()) for t in tables])
    cols = max(t.col for t in grid) + 1
    lookups = [_lookup(t, tables, offsets, tile, cols, cfg) for t in tables]
    unmatched = 0
    covered = 0

    def cores() -> Iterator[np.ndarray]:
        nonlocal unmatched, covered
        for t, lookup in zip(tables, lookups, strict=True):
            local = stash.take(t.index)
            core = lookup[local]
            unmatched += int(np.count_nonzero((local > 0) & (core == 0)))
            covered += int(np.count_nonzero(core))
            yield core.astype(np.uint32)

    mask = None
    if mask_path is None:
        mask = np.zeros((h, w), dtype=np.int32)
        for t, core in zip(grid, cores(), strict=True):
            mask[t.y0 : t.y1, t.x0 : t.x1] = core
    else:
        write_tiled(mask_path, cores(), shape=(1, h, w), dtype=np.uint32, size=tile, channels=["cells"])
    owned = [(t, t.owned) for t in tables]
    cells = Cells(
        image.channels,
        np.arange(1, int(offsets[-1]) + 1, dtype=np.int64),
        np.concatenate([t.y[o] for t, o in owned]) if owned else np.zeros(0),
        np.concatenate([t.x[o] for t, o in owned]) if owned else np.zeros(0),
        np.concatenate([t.area[o] for t, o in owned]).astype(np.int64) if owned else np.zeros(0, np.int64),
        np.concatenate([t.mean[o] for t, o in owned]) if owned else np.zeros((0, c)),
    )
    n = sum(t.lap_n for t in tables)
    mean = sum(t.lap_sum for t in tables) / max(n, 1)
    focus = sum(t.lap_sq for t in tables) / max(n, 1) - mean * mean
    return Segmented(cells, mask, mask_path, threshold, covered, h * w, focus, len(grid), unmatched)


def _lookup(
    t: TileCells, tables: list[TileCells], offsets: np.ndarray, tile: int, cols: int, cfg: Segmentation
) -> np.ndarray:
    """Local label -> global id for one tile: its own cells by rank, other tiles' cells by the nearest
    centroid among that tile's own (within a quarter diameter), else 0."""
    size = int(t.ids.max()) + 1 if len(t.ids) else 1
    lookup = np.zeros(size, dtype=np.int64)
    mine = t.owned
    lookup[t.ids[mine]] = offsets[t.index] + np.arange(1, int(mine.sum()) + 1)
    tolerance = max(1.0, cfg.diameter / 4)
    for i in np.flatnonzero(~mine):
        owner = int(t.y[i] // tile) * cols + int(t.x[i] // tile)
        other = tables[owner] if owner < len(tables) else None
        if other is None or other.index != owner or not other.owned.any():
            continue
        dist = np.hypot(other.y[other.owned] - t.y[i], other.x[other.owned] - t.x[i])
        best = int(np.argmin(dist))
        if dist[best] <= tolerance:
            lookup[t.ids[i]] = offsets[owner] + best + 1
    return lookup
