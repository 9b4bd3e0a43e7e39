from __future__ import annotations

from PIL import Image, ImageFilter

from modelyard.inferrers.phash import hamming, phash
from tests.inferrers.images import gradient, noise


def test_hash_is_64_bits_of_hex() -> None:
    out = phash(noise(0))
    assert out["bits"] == 64
    assert len(out["phash"]) == 16
    int(out["phash"], 16)


def test_resized_and_slightly_blurred_copies_hash_close() -> None:
    img = noise(3, size=(128, 128)).filter(ImageFilter.GaussianBlur(3))
    base = phash(img)["phash"]
    assert hamming(base, phash(img.resize((300, 300), Image.Resampling.BICUBIC))["phash"]) <= 6
    assert hamming(base, phash(img.filter(ImageFilter.GaussianBlur(1)))["phash"]) <= 8


def test_different_images_hash_far_apart() -> None:
    a = phash(noise(4, size=(128, 128)).filter(ImageFilter.GaussianBlur(3)))["phash"]
    b = phash(gradient((128, 128)))["phash"]
    assert hamming(a, b) > 16


def test_matches_the_imagehash_reference_algorithm() -> None:
    """imagehash.phash: scipy DCT-II along both axes of a 32x32 LANCZOS greyscale, top-left 8x8 > median."""
    import numpy as np

    img = noise(5, size=(90, 70))
    px = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    n = 32
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    basis = np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    dct = 2 * basis @ px @ (2 * basis).T
    low = dct[:8, :8]
    bits = (low > np.median(low)).flatten()
    expected = "".join("1" if b else "0" for b in bits)
    assert f"{int(expected, 2):016x}" == phash(img)["phash"]


def test_hamming() -> None:
    assert hamming("0000000000000000", "ffffffffffffffff") == 64
    assert hamming("00000000000000ff", "0000000000000001") == 7
