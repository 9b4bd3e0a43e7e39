"""Perceptual hash (64-bit pHash): the signs of the low-frequency DCT of a 32x32 greyscale image against
their median. Same algorithm as ``imagehash.phash``; near-identical images differ in few bits."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
from PIL import Image

HASH_SIZE = 8
HIGHFREQ_FACTOR = 4


@cache
def _dct_matrix(n: int) -> np.ndarray:
    """The (unnormalised) DCT-II matrix: ``M @ x`` is the DCT of a column vector ``x``."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    matrix: np.ndarray = 2.0 * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    return matrix


def phash_bits(img: Image.Image, hash_size: int = HASH_SIZE) -> np.ndarray:
    """The ``hash_size**2`` hash bits of ``img`` (bool, row-major)."""
    n = hash_size * HIGHFREQ_FACTOR
    grey = img.convert("L").resize((n, n), Image.Resampling.LANCZOS)
    px = np.asarray(grey, dtype=np.float64)
    m = _dct_matrix(n)
    low = (m @ px @ m.T)[:hash_size, :hash_size]
    bits: np.ndarray = (low > np.median(low)).flatten()
    return bits


def phash(img: Image.Image) -> dict[str, Any]:
    """``phash``: the 64-bit hash as 16 hex digits (first bit most significant)."""
    value = 0
    for bit in phash_bits(img):
        value = (value << 1) | int(bit)
    return {"phash": f"{value:016x}", "bits": HASH_SIZE * HASH_SIZE}


def hamming(a: str, b: str) -> int:
    """Bits that differ between two hex hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()
