"""Pictures of results, as PNG bytes a stage output or a page shows: the label mask outlined on a
composite of up to three channels, and a heatmap of a labelled matrix (cell-type interactions, log-odds).
Drawn with Pillow and numpy only."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from modelyard.analysis.images import Multichannel

OUTLINE = (255, 255, 0)  # cell outlines: yellow on the red/green/blue composite
MAX_SIDE = 2048  # overlays larger than this are scaled down


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _stretch(channel: np.ndarray) -> np.ndarray:
    """0..255 between the 1st and 99.8th percentiles (a flat channel is black)."""
    data = channel.astype(np.float32)
    low, high = np.percentile(data, (1.0, 99.8))
    if high <= low:
        return np.zeros(data.shape, dtype=np.uint8)
    return np.asarray(np.clip((data - low) / (high - low) * 255, 0, 255), dtype=np.uint8)


def composite(image: Multichannel, channels: Sequence[int]) -> np.ndarray:
    """(H, W, 3) uint8: up to three channels as red, green and blue (one channel: grey)."""
    _, h, w = image.shape
    picked = list(channels)[:3]
    planes = [_stretch(image.read(0, h, 0, w, channel=c)) for c in picked]
    if len(planes) == 1:
        return np.repeat(planes[0][..., None], 3, axis=2)
    while len(planes) < 3:
        planes.append(np.zeros((h, w), dtype=np.uint8))
    return np.stack(planes, axis=2)


def outlines(mask: np.ndarray) -> np.ndarray:
    """Pixels on a cell's edge: labelled, with a 4-neighbour of another label."""
    edge = np.zeros(mask.shape, dtype=bool)
    edge[1:, :] |= mask[1:, :] != mask[:-1, :]
    edge[:-1, :] |= mask[:-1, :] != mask[1:, :]
    edge[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
    return edge & (mask > 0)


def overlay_png(
    image: Multichannel, mask: np.ndarray, channels: Sequence[int] = (0,), max_side: int = MAX_SIDE
) -> bytes:
    """The mask's cell outlines on the channel composite, as PNG (scaled down past ``max_side``)."""
    _, h, w = image.shape
    if mask.shape != (h, w):
        raise ValueError(f"the mask is {mask.shape} but the image is {(h, w)}")
    rgb = composite(image, channels)
    rgb[outlines(mask)] = OUTLINE
    picture = Image.fromarray(rgb, mode="RGB")
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        picture = picture.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)
    return _png(picture)


def _colour(value: float, limit: float) -> tuple[int, int, int]:
    """Blue (negative) through white (0) to red (positive); grey for NaN."""
    if not np.isfinite(value):
        return (160, 160, 160)
    t = 0.0 if limit == 0 else max(-1.0, min(1.0, value / limit))
    fade = round(255 * (1 - abs(t)))
    return (255, fade, fade) if t >= 0 else (fade, fade, 255)


def heatmap_png(matrix: np.ndarray, labels: Sequence[str], *, title: str = "", cell: int = 40) -> bytes:
    """A square matrix as a heatmap PNG: rows and columns labelled, each cell's value printed, colours
    centred on 0 (blue below, red above, scaled to the largest absolute finite value)."""
    values = np.asarray(matrix, dtype=np.float64)
    n = len(labels)
    if values.shape != (n, n):
        raise ValueError(f"the matrix is {values.shape} but there are {n} labels")
    font = ImageFont.load_default()
    margin = 8 + 7 * max((len(s) for s in labels), default=1)
    top = margin + (18 if title else 0)
    picture = Image.new("RGB", (margin + n * cell + 8, top + n * cell + 8), "white")
    draw = ImageDraw.Draw(picture)
    finite = values[np.isfinite(values)]
    limit = float(np.abs(finite).max()) if finite.size else 0.0
    if title:
        draw.text((8, 4), title, fill="black", font=font)
    for i, name in enumerate(labels):
        draw.text((4, top + i * cell + cell // 2 - 6), name, fill="black", font=font)
        draw.text((margin + i * cell + 2, top - 14), name[: cell // 7], fill="black", font=font)
        for j in range(n):
            x0, y0 = margin + j * cell, top + i * cell
            draw.rectangle((x0, y0, x0 + cell - 1, y0 + cell - 1), fill=_colour(values[i, j], limit))
            text = f"{values[i, j]:.2g}" if np.isfinite(values[i, j]) else "-"
            draw.text((x0 + 3, y0 + cell // 2 - 6), text, fill="black", font=font)
    return _png(picture)
