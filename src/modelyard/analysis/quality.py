"""Quality checks of one sample, kept with its outputs: cells found, their area distribution, the fraction
of the image they cover, saturated pixels per channel and a focus measure (the variance of the Laplacian
of the nucleus channel, on 0..1 intensities: a blurred image scores low).

``measure`` walks an image by tiles for the figures that need its pixels (saturation, focus); ``report``
puts them together with what segmentation found; ``enforce`` raises ``QualityCheckFailed`` naming every
threshold of the spec the sample breaks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelyard import extras
from modelyard.analysis.images import Multichannel, saturation_level, tile_grid
from modelyard.analysis.params import QC_THRESHOLDS
from modelyard.analysis.segment import Cells, as_unit
from modelyard.errors import QualityCheckFailed

try:
    from scipy import ndimage
except ImportError as exc:  # the analysis extra is not installed
    raise extras.absent("analysis", __name__, exc) from exc

TILE = 512  # the figures do not depend on it (one pixel of overlap); memory does


@dataclass(frozen=True, slots=True)
class PixelFigures:
    """What the checks read from the pixels: saturated fraction per channel, and focus."""

    saturated: dict[str, float]
    focus: float


def measure(image: Multichannel, nucleus: int) -> PixelFigures:
    """Saturated pixels of every channel and the focus of channel ``nucleus``, one tile at a time (each
    tile's window one pixel wider, so the Laplacian is the untiled one)."""
    c, h, w = image.shape
    level = saturation_level(image.dtype)
    saturated = np.zeros(c, dtype=np.int64)
    total, total_sq, count = 0.0, 0.0, 0
    for tile in tile_grid(h, w, TILE, 1):
        block = image.read(tile.y0, tile.y1, tile.x0, tile.x1)
        saturated += np.count_nonzero(block.reshape(c, -1) >= level, axis=1)
        window = as_unit(image.read(tile.wy0, tile.wy1, tile.wx0, tile.wx1, channel=nucleus))
        lap = ndimage.laplace(window)[tile.core_in_window].astype(np.float64)
        total += float(lap.sum())
        total_sq += float((lap * lap).sum())
        count += lap.size
    mean = total / max(count, 1)
    focus = total_sq / max(count, 1) - mean * mean
    names = image.channels
    return PixelFigures({names[i]: float(saturated[i]) / (h * w) for i in range(c)}, focus)


def report(cells: Cells, covered_pixels: int, pixels: int, figures: PixelFigures) -> dict[str, Any]:
    """The quality report of one sample (JSON-able)."""
    area = cells.area.astype(np.float64)
    spread = (
        dict(
            zip(
                ("min", "p5", "median", "p95", "max"),
                (float(v) for v in np.percentile(area, [0, 5, 50, 95, 100])),
                strict=True,
            )
        )
        | {"mean": float(area.mean())}
        if len(area)
        else {k: 0.0 for k in ("min", "p5", "median", "p95", "max", "mean")}
    )
    return {
        "cells": len(cells),
        "area": spread,
        "covered_fraction": covered_pixels / max(pixels, 1),
        "saturated_fraction": figures.saturated,
        "focus": figures.focus,
        "pixels": pixels,
    }


def _value(found: dict[str, Any], path: str) -> Any:
    value: Any = found
    for part in path.split("."):
        value = value[part]
    return value


def failures(found: dict[str, Any], thresholds: Mapping[str, float]) -> list[dict[str, str]]:
    """Every threshold ``found`` breaks, as ``{"field": "qc.<name>", "detail": ...}``."""
    out = []
    for key, limit in thresholds.items():
        path, side = QC_THRESHOLDS[key]
        value = _value(found, path)
        values = value if isinstance(value, dict) else {"": value}
        for name, v in values.items():
            broken = v < limit if side == "min" else v > limit
            if broken:
                what = f"{path}[{name}]" if name else path
                sign = "<" if side == "min" else ">"
                out.append({"field": f"qc.{key}", "detail": f"{what} is {v:.6g} {sign} {key} {limit:g}"})
    return out


def enforce(found: dict[str, Any], thresholds: Mapping[str, float]) -> None:
    """``QualityCheckFailed`` listing every threshold ``found`` breaks (nothing when none)."""
    broken = failures(found, thresholds)
    if broken:
        reasons = "; ".join(b["detail"] for b in broken)
        raise QualityCheckFailed(f"the sample fails its quality checks: {reasons}", errors=broken)
