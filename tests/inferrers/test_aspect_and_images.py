from __future__ import annotations

import pytest
from PIL import Image

from modelyard.errors import UndecodableInput
from modelyard.inferrers.aspect import aspect_ratio
from modelyard.inferrers.images import decode_image
from tests.inferrers.images import encode, solid


@pytest.mark.parametrize(
    ("size", "ratio"), [((40, 20), 2.0), ((20, 40), 0.5), ((33, 33), 1.0), ((100, 3), 33.333333)]
)
def test_aspect_ratio_is_width_over_height(size: tuple[int, int], ratio: float) -> None:
    out = aspect_ratio(solid((1, 2, 3), size))
    assert out == {"width": size[0], "height": size[1], "aspect_ratio": ratio}


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP"])
def test_decode_reads_common_formats_as_rgb(fmt: str) -> None:
    img = decode_image(encode(solid((10, 200, 30)), fmt))
    assert img.mode == "RGB"
    assert img.size == (40, 20)


def test_decode_applies_exif_orientation() -> None:
    img = solid((9, 9, 9), (40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    data = encode(img, "JPEG", exif=exif.tobytes())
    assert decode_image(data).size == (20, 40)


def test_transparency_is_composited_over_white() -> None:
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert decode_image(encode(rgba)).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("data", [b"", b"not an image at all", encode(solid((1, 1, 1)))[:40]])
def test_undecodable_bytes_raise_a_domain_error(data: bytes) -> None:
    with pytest.raises(UndecodableInput):
        decode_image(data)


def test_images_over_the_pixel_cap_are_refused_before_decoding() -> None:
    with pytest.raises(UndecodableInput, match="pixel limit"):
        decode_image(encode(solid((1, 1, 1), (100, 100))), max_pixels=5000)
