"""Small images made on the spot for inferrer tests."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (40, 20)) -> Image.Image:
    return Image.new("RGB", size, colour)


def halves(
    left: tuple[int, int, int], right: tuple[int, int, int], size: tuple[int, int] = (40, 20)
) -> Image.Image:
    img = Image.new("RGB", size, left)
    img.paste(Image.new("RGB", (size[0] // 2, size[1]), right), (size[0] // 2, 0))
    return img


def noise(seed: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8), "RGB")


def gradient(size: tuple[int, int] = (64, 64)) -> Image.Image:
    x = np.linspace(0, 255, size[0], dtype=np.float32)
    y = np.linspace(0, 255, size[1], dtype=np.float32)[:, None]
    arr = np.stack(
        [
            np.broadcast_to(x, (size[1], size[0])),
            np.broadcast_to(y, (size[1], size[0])),
            np.full((size[1], size[0]), 128.0),
        ],
        axis=2,
    )
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def encode(img: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kwargs)
    return out.getvalue()
