"""Colour palette: a 1,000-bin (10x10x10 RGB) L2-normalised histogram embedding, the average colour as
hex, and the top-k colours (each the mean colour of its bin's pixels) with the fraction of pixels."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

BINS = 10
MAX_SIDE = 512  # larger images are subsampled (nearest neighbour: no new colours) before counting


def to_hex(rgb: np.ndarray | tuple[float, float, float]) -> str:
    """``#rrggbb`` of an RGB triple (0-255 floats are rounded)."""
    r, g, b = (round(float(c)) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def _pixels(img: Image.Image, max_side: int) -> np.ndarray:
    width, height = img.size
    if max(width, height) > max_side:  # a new small image straight from the big one: never a second full copy
        scale = max_side / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        img = img.resize(size, Image.Resampling.NEAREST)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).reshape(-1, 3)


def palette(
    img: Image.Image, *, top_k: int = 5, bins: int = BINS, max_side: int = MAX_SIDE
) -> dict[str, Any]:
    """The palette of ``img``: ``embedding`` (bins**3 floats, L2 norm 1), ``average`` and ``top`` colours."""
    px = _pixels(img, max_side)
    q = (px.astype(np.uint32) * bins) >> 8  # 0..bins-1 per channel
    index = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    size = bins**3
    counts = np.bincount(index, minlength=size).astype(np.float64)
    norm = float(np.linalg.norm(counts))
    embedding = (counts / norm if norm else counts).astype(np.float32)
    sums = np.stack([np.bincount(index, weights=px[:, c], minlength=size) for c in range(3)], axis=1)
    order = [int(i) for i in np.argsort(-counts, kind="stable")[:top_k] if counts[i] > 0]
    total = float(len(px))
    top = [{"hex": to_hex(sums[i] / counts[i]), "fraction": round(counts[i] / total, 6)} for i in order]
    return {
        "embedding": embedding.tolist(),
        "average": to_hex(px.mean(axis=0)),
        "top": top,
        "bins": bins,
    }
