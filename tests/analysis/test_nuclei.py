"""The nuclei split against what it stands in for: scipy's exact distance transform and scikit-image's
``peak_local_max`` on random blob masks, a hand-made pair of touching nuclei, and the flood's shortcut
for one-seed components."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.segmentation import watershed

from modelyard.analysis import nuclei


def _blobs(seed: int, h: int, w: int, sigma: float, fraction: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.random((h, w)), sigma)
    return np.asarray(smooth > np.quantile(smooth, fraction))


blob_masks = st.builds(
    _blobs,
    st.integers(0, 10_000),
    st.integers(1, 120),
    st.integers(1, 120),
    st.floats(0.5, 5.0),
    st.floats(0.0, 1.0),
)


@settings(max_examples=150, deadline=None)
@given(fg=blob_masks)
def test_squared_distance_is_scipys_distance_squared(fg: np.ndarray) -> None:
    near = nuclei.squared_distance(fg)
    exact = ndimage.distance_transform_edt(fg)
    if near is None:  # only a shape reaching farther than the short cut covers falls back
        assert fg.all() or exact.max() > nuclei._REACH
    else:
        assert near.dtype == np.int16
        assert np.array_equal(np.sqrt(near.astype(np.float64)), exact)


def test_squared_distance_of_a_hand_made_shape() -> None:
    fg = np.zeros((5, 7), dtype=bool)
    fg[1:4, 1:6] = True  # a 3 x 5 block: its middle row is 2 from the background, the rest 1
    near = nuclei.squared_distance(fg)
    assert near is not None
    expected = np.zeros((5, 7), dtype=np.int16)
    expected[1:4, 1:6] = 1
    expected[2, 2:5] = 4
    assert np.array_equal(near, expected)


def test_squared_distance_gives_way_past_its_reach() -> None:
    assert nuclei.squared_distance(np.ones((10, 10), dtype=bool)) is None  # no background at all
    big = np.zeros((200, 200), dtype=bool)
    big[10:190, 10:190] = True  # 90 px from the background at its centre
    assert nuclei.squared_distance(big) is None


@settings(max_examples=100, deadline=None)
@given(fg=blob_masks, spacing=st.sampled_from([2, 3, 4, 6]))
def test_peaks_are_scikit_images_on_the_squared_distance(fg: np.ndarray, spacing: int) -> None:
    dist = ndimage.distance_transform_edt(fg)
    expected = peak_local_max(dist, min_distance=spacing, threshold_abs=0.5, exclude_border=False)  # type: ignore[no-untyped-call]
    assert np.array_equal(nuclei.peaks(dist, spacing), expected)
    near = nuclei.squared_distance(fg)
    if near is not None:
        assert np.array_equal(nuclei.peaks(near, spacing), expected)


def _two_discs() -> np.ndarray:
    """Two discs of radius 6 whose edges overlap by 2 px, and a lone disc of radius 4."""
    yy, xx = np.mgrid[:40, :60]
    a = (yy - 15) ** 2 + (xx - 15) ** 2 <= 36
    b = (yy - 15) ** 2 + (xx - 25) ** 2 <= 36
    c = (yy - 32) ** 2 + (xx - 48) ** 2 <= 16
    return np.asarray(a | b | c)


def test_touching_discs_are_split_and_a_lone_one_kept_whole() -> None:
    fg = _two_discs()
    labels = nuclei.split_nuclei(fg, 4)
    assert set(np.unique(labels).tolist()) == {0, 1, 2, 3}
    assert np.array_equal(labels > 0, fg)
    left, right, lone = labels[15, 12], labels[15, 28], labels[32, 48]
    assert len({int(left), int(right), int(lone)}) == 3
    assert np.all(labels[30:, 40:][fg[30:, 40:]] == lone)
    # the cut runs down the middle: the left disc holds the columns left of x = 20, the right those past it
    assert np.all(labels[:, :19][fg[:, :19]] == left) and np.all(labels[:, 22:40][fg[:, 22:40]] == right)


@pytest.mark.parametrize("boxes", [256, -1])  # each shared component in its box, or all in one call
def test_flood_matches_the_watershed_away_from_ties(boxes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nuclei, "_BOXES", boxes)
    fg = _two_discs()
    dist = ndimage.distance_transform_edt(fg)
    seeds = nuclei.peaks(dist, 4)
    markers = np.zeros(fg.shape, dtype=np.int32)
    markers[tuple(seeds.T)] = np.arange(1, len(seeds) + 1)
    expected = watershed(-dist, markers, mask=fg)  # type: ignore[no-untyped-call]
    got = nuclei.flood(dist, fg, seeds)
    # the discs are mirror images, so only pixels on the mirror line are ties the queue may settle otherwise
    off_line = np.ones(fg.shape, dtype=bool)
    off_line[:, 20] = False
    assert np.array_equal(got[off_line], expected[off_line])
    assert np.array_equal(got > 0, fg)
