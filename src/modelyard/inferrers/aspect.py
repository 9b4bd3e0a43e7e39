"""Aspect ratio (width / height) of an image, as displayed (EXIF orientation applied on decoding)."""

from __future__ import annotations

from typing import Any

from PIL import Image


def aspect_ratio(img: Image.Image) -> dict[str, Any]:
    """``width``, ``height`` and ``aspect_ratio`` (width / height, 6 decimals)."""
    width, height = img.size
    return {"width": width, "height": height, "aspect_ratio": round(width / height, 6)}
