from __future__ import annotations

import pytest
from PIL import Image

from modelyard.errors import UndecodableInput
from modelyard.inferrers.aspect import aspect_ratio
from modelyard.inferrers.images import ImageLimits, decode_image, decoded_bytes
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
        decode_image(encode(solid((1, 1, 1), (100, 100))), limits=ImageLimits(max_pixels=5000))


@pytest.mark.parametrize(
    ("mode", "per_pixel"), [("RGB", 3), ("L", 1 + 3), ("RGBA", 4 + 3 + 8), ("P", 1 + 3 + 8), ("I;16", 4 + 3)]
)
def test_decoding_memory_counts_the_pixels_and_the_rgb_copy(mode: str, per_pixel: int) -> None:
    assert decoded_bytes(mode, 100, 50) == 100 * 50 * per_pixel  # modes not listed count 4 bytes a pixel


def test_image_whose_decoding_takes_more_than_the_memory_bound_is_refused_undecoded() -> None:
    data = encode(Image.new("RGBA", (1000, 1000), (1, 2, 3, 4)))
    with pytest.raises(UndecodableInput, match="MiB to decode, over the 10 MiB limit"):
        decode_image(data, limits=ImageLimits(max_bytes=10 * 1024 * 1024))
    assert decode_image(data, limits=ImageLimits(max_bytes=20 * 1024 * 1024)).size == (1000, 1000)


def test_jpeg_decodes_at_reduced_scale_for_callers_that_shrink_it() -> None:
    data = encode(solid((200, 30, 90), (2048, 1024)), "JPEG")
    small = decode_image(data, draft_side=256)
    assert small.mode == "RGB" and small.size == (512, 256)
    assert decode_image(data).size == (2048, 1024)


def test_transparent_image_is_composited_over_white() -> None:
    img = Image.new("RGBA", (4, 2), (255, 0, 0, 0))
    img.putpixel((0, 0), (255, 0, 0, 255))
    out = decode_image(encode(img))
    assert (
        out.mode == "RGB" and out.getpixel((0, 0)) == (255, 0, 0) and out.getpixel((1, 0)) == (255, 255, 255)
    )
