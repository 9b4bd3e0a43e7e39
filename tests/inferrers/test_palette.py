from __future__ import annotations

import numpy as np
import pytest

from modelyard.inferrers.palette import palette, to_hex
from tests.inferrers.images import halves, noise, solid


def test_solid_colour_has_one_bin_average_and_top_colour() -> None:
    out = palette(solid((200, 30, 90)))
    emb = np.asarray(out["embedding"])
    assert emb.shape == (1000,)
    assert np.count_nonzero(emb) == 1
    assert emb[(200 * 10 >> 8) * 100 + (30 * 10 >> 8) * 10 + (90 * 10 >> 8)] == pytest.approx(1.0)
    assert out["average"] == "#c81e5a"
    assert out["top"] == [{"hex": "#c81e5a", "fraction": 1.0}]


def test_two_halves_split_evenly_and_average_between() -> None:
    out = palette(halves((255, 0, 0), (0, 0, 255)), top_k=5)
    emb = np.asarray(out["embedding"])
    assert np.count_nonzero(emb) == 2
    assert np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-6)
    assert sorted(t["hex"] for t in out["top"]) == ["#0000ff", "#ff0000"]
    assert [t["fraction"] for t in out["top"]] == [0.5, 0.5]
    assert out["average"] in ("#800080", "#7f007f", "#80007f", "#7f0080")


@pytest.mark.parametrize("k", [1, 3, 10])
def test_top_k_limits_and_orders_by_share(k: int) -> None:
    out = palette(noise(1), top_k=k)
    fractions = [t["fraction"] for t in out["top"]]
    assert len(fractions) == k
    assert fractions == sorted(fractions, reverse=True)


def test_embedding_is_l2_normalised_float32_values() -> None:
    emb = np.asarray(palette(noise(2))["embedding"], dtype=np.float64)
    assert np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-5)
    assert (emb >= 0).all()


def test_large_images_are_subsampled_but_keep_their_palette() -> None:
    out = palette(halves((0, 255, 0), (255, 255, 255), size=(2000, 1000)))
    assert sorted(t["hex"] for t in out["top"]) == ["#00ff00", "#ffffff"]


@pytest.mark.parametrize(
    ("rgb", "hexa"), [((0, 0, 0), "#000000"), ((255, 255, 255), "#ffffff"), ((15.6, 16.4, 1), "#101001")]
)
def test_to_hex(rgb: tuple[float, float, float], hexa: str) -> None:
    assert to_hex(rgb) == hexa
