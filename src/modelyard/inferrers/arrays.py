"""Summary statistics of an array: shape, dtype, and min/max/mean over its finite numbers."""

from __future__ import annotations

from typing import Any

import numpy as np

NUMERIC = "biuf"  # bool, signed, unsigned, float: the dtype kinds min/max/mean are taken over


def array_stats(arr: np.ndarray) -> dict[str, Any]:
    """``shape``, ``dtype``, ``size``, and ``min``, ``max``, ``mean`` of the finite numbers (NaN and
    infinities left out; all three null for an empty or non-numeric array, or one with none finite)."""
    body: dict[str, Any] = {"shape": list(arr.shape), "dtype": str(arr.dtype), "size": int(arr.size)}
    finite = arr[np.isfinite(arr)] if arr.dtype.kind in NUMERIC else arr[:0]
    if finite.size == 0:
        return body | {"min": None, "max": None, "mean": None}
    values = finite.astype(np.float64)
    return body | {"min": float(values.min()), "max": float(values.max()), "mean": float(values.mean())}
