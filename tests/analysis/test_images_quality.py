"""Quality checks (hand-built images and masks, figures written out) and the pictures: mask overlays and
heatmaps."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from modelyard.analysis import params, quality
from modelyard.analysis.images import ArrayImage
from modelyard.analysis.render import OUTLINE, heatmap_png, overlay_png
from modelyard.analysis.segment import measure_cells
from modelyard.analysis.stages_images import pick_matrix
from modelyard.errors import InvalidInput, QualityCheckFailed


def _mask() -> np.ndarray:
    """Two cells in a 10 x 10 image: a 3 x 3 square (id 1) and a 4 x 4 square (id 2)."""
    mask = np.zeros((10, 10), dtype=np.int32)
    mask[1:4, 1:4] = 1
    mask[5:9, 5:9] = 2
    return mask


def _image() -> ArrayImage:
    data = np.full((2, 10, 10), 1000, dtype=np.uint16)
    data[1, 0, :3] = 65535  # 3 saturated pixels of 100 in CD3
    return ArrayImage(data, ("DAPI", "CD3"))


def test_the_report_holds_the_figures_of_the_sample() -> None:
    image, mask = _image(), _mask()
    found = quality.report(measure_cells(image, mask), 25, 100, quality.measure(image, 0))
    assert found["cells"] == 2
    assert found["area"] == {"min": 9.0, "p5": 9.35, "median": 12.5, "p95": 15.65, "max": 16.0, "mean": 12.5}
    assert found["covered_fraction"] == 0.25
    assert found["saturated_fraction"] == {"DAPI": 0.0, "CD3": 0.03}
    assert found["focus"] == 0.0  # a flat nucleus channel has no edges at all


def test_a_blurred_image_scores_lower_focus() -> None:
    rng = np.random.default_rng(0)
    sharp = (rng.random((1, 256, 256)) * 60000).astype(np.uint16)
    blurred = ndimage.gaussian_filter(sharp.astype(np.float64), (0, 2, 2)).astype(np.uint16)
    crisp = quality.measure(ArrayImage(sharp, ("DAPI",)), 0).focus
    soft = quality.measure(ArrayImage(blurred, ("DAPI",)), 0).focus
    assert soft < crisp / 10


def test_thresholds_fail_the_sample_naming_each_reason() -> None:
    image, mask = _image(), _mask()
    found = quality.report(measure_cells(image, mask), 25, 100, quality.measure(image, 0))
    quality.enforce(found, {"min_cells": 2, "max_saturated_fraction": 0.05})
    with pytest.raises(QualityCheckFailed) as info:
        quality.enforce(found, {"min_cells": 3, "max_saturated_fraction": 0.01, "max_covered_fraction": 0.5})
    assert info.value.status == 422 and info.value.code == "quality-check-failed"
    assert info.value.errors == [
        {"field": "qc.min_cells", "detail": "cells is 2 < min_cells 3"},
        {
            "field": "qc.max_saturated_fraction",
            "detail": "saturated_fraction[CD3] is 0.03 > max_saturated_fraction 0.01",
        },
    ]
    assert str(info.value).startswith("the sample fails its quality checks: cells is 2 < min_cells 3; ")


def test_bad_thresholds_are_named() -> None:
    assert params.qc_problems({"min_cels": 1, "max_covered_fraction": 2, "min_focus": "x"}) == [
        ("min_cels", f"unknown threshold (known: {', '.join(params.QC_THRESHOLDS)})"),
        ("max_covered_fraction", "must be a fraction 0..1"),
        ("min_focus", "must be a number >= 0"),
    ]
    assert params.qc_problems([1]) == [("", f"must be a mapping of {', '.join(params.QC_THRESHOLDS)}")]


def test_the_overlay_outlines_each_cell_on_the_composite() -> None:
    png = Image.open(io.BytesIO(overlay_png(_image(), _mask(), [0, 1])))
    pixels = np.asarray(png)
    assert png.size == (10, 10)
    assert tuple(pixels[1, 2]) == OUTLINE and tuple(pixels[5, 6]) == OUTLINE  # edges
    assert tuple(pixels[2, 2]) != OUTLINE and tuple(pixels[0, 9]) != OUTLINE  # inside, background
    big = np.zeros((1, 300, 500), dtype=np.uint8)
    small = Image.open(
        io.BytesIO(overlay_png(ArrayImage(big, ("a",)), np.zeros((300, 500), np.int32), max_side=100))
    )
    assert small.size == (100, 60)
    with pytest.raises(ValueError, match="the mask is"):
        overlay_png(_image(), np.zeros((3, 3), np.int32))


def test_a_heatmap_colours_values_around_zero() -> None:
    matrix = np.array([[1.5, -1.5], [-1.5, np.nan]])
    picture = np.asarray(Image.open(io.BytesIO(heatmap_png(matrix, ["T cell", "B cell"], cell=40))))
    colours = {tuple(int(v) for v in px) for px in picture.reshape(-1, 3)}
    assert (255, 0, 0) in colours and (0, 0, 255) in colours and (160, 160, 160) in colours
    with pytest.raises(ValueError, match="there are 3 labels"):
        heatmap_png(matrix, ["a", "b", "c"])


def test_a_heatmap_stage_picks_its_matrix_from_the_statistics() -> None:
    found = {"log_odds": [[0.5, None], [None, -0.5]], "counts_test": {"z": [[1, 2], [2, 1]]}}
    matrix, size = pick_matrix(found, "log_odds")
    assert size == 2 and matrix[0, 0] == 0.5 and np.isnan(matrix[0, 1])
    assert pick_matrix(found, "counts_test.z")[0].tolist() == [[1, 2], [2, 1]]
    with pytest.raises(InvalidInput, match=r"no 'log_odds_test\.z' matrix") as info:
        pick_matrix(found, "log_odds_test.z")
    assert info.value.field == "params.matrix"
    with pytest.raises(InvalidInput, match="not a square matrix"):
        pick_matrix({"counts": [[1, 2, 3]]}, "counts")


def test_a_heatmap_reads_statistics_given_as_json_bytes() -> None:
    assert pick_matrix(b'{"counts": [[1, 2], [3, 4]]}', "counts")[0].tolist() == [[1, 2], [3, 4]]
    with pytest.raises(InvalidInput, match="not JSON") as info:
        pick_matrix(b"\x89PNG", "counts")
    assert info.value.field == "inputs"
