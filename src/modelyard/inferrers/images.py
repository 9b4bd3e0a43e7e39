"""Decoding raw bytes into images: bounded in pixels, EXIF orientation applied, always RGB."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from modelyard.errors import UndecodableInput

MAX_PIXELS = 100_000_000  # a decompression bomb larger than this is refused, not decoded


def decode_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The RGB image in ``data`` (any format Pillow reads), upright per its EXIF orientation.

    Raises ``UndecodableInput`` for bytes that are not an image, a truncated file, or an image over
    ``max_pixels``.
    """
    if not data:
        raise UndecodableInput("the input is empty, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise UndecodableInput(
                    f"image of {width}x{height} pixels is over the {max_pixels}-pixel limit"
                )
            img.load()
            upright: Image.Image = ImageOps.exif_transpose(img) or img
    except UndecodableInput:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise UndecodableInput(f"cannot decode the input as an image: {exc}") from None
    return upright if upright.mode == "RGB" else _to_rgb(upright)


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB, compositing any transparency over white (what a viewer shows)."""
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def encode_png(img: Image.Image) -> bytes:
    """``img`` as PNG bytes."""
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()
