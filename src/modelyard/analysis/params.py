"""What the tissue stage kinds check in a spec before anything runs: the problems of preprocessing,
segmentation and quality-check parameters, and the limits of typing and statistics. Nothing here needs the
analysis extra (numpy at most), so a server without it still reads tissue specs field by field (and
refuses them for the missing extra alone: ``extras`` at the package root).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

Variant = Literal["standard", "upper_triangle"]
VARIANTS: tuple[Variant, ...] = ("standard", "upper_triangle")
MAX_TYPES = 255  # types are shuffled as uint8 (cache-sized); more than this is not a cell typing
MAX_PERMUTATIONS = 10_000
MAX_K = 100  # nearest neighbours per cell
TypingMethod = Literal["kmeans", "gmm"]
TYPING_METHODS: tuple[TypingMethod, ...] = ("kmeans", "gmm")
SEGMENT_METHODS = ("threshold", "onnx")
# quality threshold name -> (what it bounds in the report, "min" or "max")
QC_THRESHOLDS: dict[str, tuple[str, str]] = {
    "min_cells": ("cells", "min"),
    "max_cells": ("cells", "max"),
    "min_median_area": ("area.median", "min"),
    "max_median_area": ("area.median", "max"),
    "min_covered_fraction": ("covered_fraction", "min"),
    "max_covered_fraction": ("covered_fraction", "max"),
    "max_saturated_fraction": ("saturated_fraction", "max"),
    "min_focus": ("focus", "min"),
}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def preprocess_problems(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, detail) for every bad preprocessing parameter."""
    out: list[tuple[str, str]] = []
    low, high = params.get("low_percentile", 1.0), params.get("high_percentile", 99.8)
    for key, value in (("low_percentile", low), ("high_percentile", high)):
        if not _number(value) or not 0 <= value <= 100:
            out.append((key, "must be a number 0..100"))
    if _number(low) and _number(high) and not low < high:
        out.append(("high_percentile", "must be above low_percentile"))
    radius = params.get("background_radius", 25)
    if not isinstance(radius, int) or isinstance(radius, bool) or not 0 <= radius <= 500:
        out.append(("background_radius", "must be an integer 0..500 (pixels; 0 for none)"))
    return out


def segment_problems(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, detail) for every bad segmentation parameter."""
    out: list[tuple[str, str]] = []
    channel = params.get("channel", 0)
    if not isinstance(channel, str | int) or isinstance(channel, bool) or channel == "":
        out.append(("channel", "must be a channel name or index"))
    for key, low, high in (("diameter", 3, 500), ("min_area", 1, 1_000_000)):
        value = params.get(key, low)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            out.append((key, f"must be an integer {low}..{high}"))
    for key, low, high in (("threshold", 0, 1), ("smooth_sigma", 0, 20), ("probability", 0, 1)):
        value = params.get(key)
        bad = not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high
        if value is not None and bad:
            out.append((key, f"must be a number {low}..{high}"))
    if params.get("method", "threshold") not in SEGMENT_METHODS:
        out.append(("method", f"must be one of {', '.join(SEGMENT_METHODS)}"))
    return out


def qc_problems(thresholds: Any) -> list[tuple[str, str]]:
    """(field, detail) for every bad threshold of a spec's ``qc`` mapping."""
    if not isinstance(thresholds, Mapping):
        return [("", f"must be a mapping of {', '.join(QC_THRESHOLDS)}")]
    out = []
    for key, value in thresholds.items():
        if key not in QC_THRESHOLDS:
            out.append((str(key), f"unknown threshold (known: {', '.join(QC_THRESHOLDS)})"))
        elif not _number(value) or value < 0:
            out.append((str(key), "must be a number >= 0"))
        elif key.endswith("fraction") and value > 1:
            out.append((str(key), "must be a fraction 0..1"))
    return out
