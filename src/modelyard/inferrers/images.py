"""Decoding raw bytes into images: bounded in pixels and in memory to decode (``ImageLimits``, from the
``MODELYARD_MAX_IMAGE_*`` settings), EXIF orientation applied, always RGB."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image, ImageOps, UnidentifiedImageError

from modelyard.errors import UndecodableInput

if TYPE_CHECKING:
    from modelyard.settings import Settings

MAX_PIXELS = 100_000_000  # a decompression bomb larger than this is refused, not decoded
MAX_DECODED_BYTES = 320 * 1024 * 1024  # most memory decoding one image (and making it RGB) may take
BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3}


def decoded_bytes(mode: str, width: int, height: int) -> int:
    """About the most memory decoding a ``mode`` image of ``width`` x ``height`` and making it RGB holds at
    once: the decoded pixels, plus the RGB result when the mode is not RGB, plus (transparency, which a
    palette image may have) an RGBA or RGB copy, the alpha mask and the white background."""
    own = BYTES_PER_PIXEL.get(mode, 4)  # RGBA, CMYK, I, F, I;16 and the like: 4 bytes or fewer
    extra = 0 if mode == "RGB" else 3 + (8 if "A" in mode or mode == "P" else 0)
    return width * height * (own + extra)


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """How big an image may be decoded: its pixels, and the memory decoding it (and making it RGB) takes
    (``MODELYARD_MAX_IMAGE_PIXELS``, ``MODELYARD_MAX_IMAGE_DECODED_BYTES``)."""

    max_pixels: int = MAX_PIXELS
    max_bytes: int = MAX_DECODED_BYTES

    @classmethod
    def of(cls, settings: Settings) -> ImageLimits:
        """The limits the settings set."""
        return cls(settings.max_image_pixels, settings.max_image_decoded_bytes)


DEFAULT_LIMITS = ImageLimits()


def _open(data: bytes, limits: ImageLimits, draft_side: int | None) -> tuple[Image.Image, int]:
    """The image in ``data``, not yet decoded (only its header read), and the memory decoding it takes;
    ``UndecodableInput`` when it is not an image or is over ``limits``."""
    if not data:
        raise UndecodableInput("the input is empty, not an image")
    img = Image.open(io.BytesIO(data))
    width, height = img.size
    if width * height > limits.max_pixels:
        raise UndecodableInput(
            f"image of {width}x{height} pixels is over the {limits.max_pixels}-pixel limit"
        )
    if draft_side is not None:
        img.draft("RGB", (draft_side, draft_side))
    need = decoded_bytes(img.mode, *img.size)
    if need > limits.max_bytes:
        raise UndecodableInput(
            f"image of {width}x{height} pixels ({img.mode}) takes {need >> 20} MiB to decode, over "
            f"the {limits.max_bytes >> 20} MiB limit"
        )
    return img, need


def decoding_bytes(
    data: bytes, *, limits: ImageLimits = DEFAULT_LIMITS, draft_side: int | None = None
) -> int:
    """The memory ``decode_image`` takes to decode ``data`` (read from its header, nothing decoded), for
    callers that bound what they decode at once; raises as ``decode_image`` does."""
    with _decoding():
        return _open(data, limits, draft_side)[1]


def decode_image(
    data: bytes, *, limits: ImageLimits = DEFAULT_LIMITS, draft_side: int | None = None
) -> Image.Image:
    """The RGB image in ``data`` (any format Pillow reads), upright per its EXIF orientation.

    With ``draft_side``, a format that can decode at a reduced scale (JPEG) does so, down to no less than
    ``draft_side`` on the shorter side: for callers that shrink the image anyway.

    Raises ``UndecodableInput`` for bytes that are not an image, a truncated file, an image over
    ``limits.max_pixels``, or one whose decoding would take more than ``limits.max_bytes`` of memory.
    """
    with _decoding():
        img, _ = _open(data, limits, draft_side)
        img.load()
        # in place: otherwise an image without an EXIF rotation comes back as a full copy
        ImageOps.exif_transpose(img, in_place=True)
    return img if img.mode == "RGB" else _to_rgb(img)


@contextmanager
def _decoding() -> Iterator[None]:
    """Pillow's own complaints about the bytes as ``UndecodableInput`` (a decompression bomb included)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
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


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB, compositing any transparency over white (what a viewer shows), holding the image, its RGB copy
    and the alpha mask at most."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        alpha = img.getchannel("A")
        out = Image.new("RGB", img.size, (255, 255, 255))
        out.paste(img.convert("RGB"), mask=alpha)
        return out
    return img.convert("RGB")


def encode_png(img: Image.Image) -> bytes:
    """``img`` as PNG bytes."""
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()
