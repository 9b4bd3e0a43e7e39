"""Preprocessing and segmentation of a synthetic tissue image with known nuclei: the count found, cells cut
by tile borders stitched once, tiled runs equal to untiled ones, an ONNX model in place of the threshold,
tiles on a Dask cluster of separate processes, and a mask written tiled to disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from modelyard.analysis.images import ArrayImage, TiffImage, open_image
from modelyard.analysis.preprocess import Preprocess, preprocess_file, preprocess_image
from modelyard.analysis.segment import Segmentation, measure_cells, segment
from modelyard.errors import InvalidInput
from tests.analysis.tissue import disc_centres, probability_model, same_partition, tissue

H, W, R = 300, 360, 7
TILE = 96  # small tiles: many nuclei lie across their borders
CFG = Segmentation(channel="DAPI", diameter=14)


@pytest.fixture(scope="module")
def centres() -> np.ndarray:
    return disc_centres(H, W, R, 160)


@pytest.fixture(scope="module")
def image(centres: np.ndarray) -> ArrayImage:
    return ArrayImage(tissue(H, W, centres, R), ("DAPI", "CD3", "CD20"))


@pytest.fixture(scope="module")
def pre(image: ArrayImage) -> ArrayImage:
    done, _ = preprocess_image(image, Preprocess())
    return done


def _across_borders(centres: np.ndarray, tile: int) -> int:
    """Nuclei whose disc crosses a tile border."""
    near = lambda v: np.abs(v - np.round(v / tile) * tile) < R  # noqa: E731
    return int(np.count_nonzero(near(centres[:, 0]) | near(centres[:, 1])))


def test_tiled_preprocessing_equals_untiled(image: ArrayImage) -> None:
    whole, stats = preprocess_image(image, Preprocess(), tile=4096)
    tiled, _ = preprocess_image(image, Preprocess(), tile=64, workers=2)
    assert np.array_equal(whole.data, tiled.data)
    assert whole.data.min() >= 0 and whole.data.max() <= 1
    # the background gradient is gone: background pixels sit near 0 at the top and the bottom alike
    dapi = whole.data[0]
    assert abs(float(np.median(dapi[:40])) - float(np.median(dapi[-40:]))) < 0.02
    assert stats.low[0] < stats.high[0]


def test_segmentation_finds_the_nuclei_including_those_across_tile_borders(
    pre: ArrayImage, centres: np.ndarray
) -> None:
    assert _across_borders(centres, TILE) >= 30
    found = segment(pre, CFG, tile=TILE)
    assert found.tiles == 16
    assert abs(len(found.cells) - len(centres)) <= 0.05 * len(centres)
    # every true centre has a cell within 2 px, and no two cells claim the same nucleus
    got = np.c_[found.cells.y, found.cells.x]
    dist = np.hypot(*(got[:, None, :] - centres[None, :, :]).transpose(2, 0, 1))
    assert np.all(dist.min(axis=0) < 2.0)
    assert len(set(dist.argmin(axis=1).tolist())) == len(got)
    area = np.pi * R * R
    assert np.all(np.abs(found.cells.area - area) < 0.25 * area)
    assert found.mask is not None and set(np.unique(found.mask)) == {0, *found.cells.id.tolist()}


def test_tiled_segmentation_equals_untiled(pre: ArrayImage) -> None:
    whole = segment(pre, CFG, tile=4096)
    tiled = segment(pre, CFG, tile=TILE, workers=2)
    assert whole.tiles == 1 and tiled.unmatched_pixels == 0
    assert whole.mask is not None and tiled.mask is not None
    assert same_partition(whole.mask, tiled.mask)
    order_w = np.lexsort((whole.cells.x, whole.cells.y))
    order_t = np.lexsort((tiled.cells.x, tiled.cells.y))
    assert np.allclose(whole.cells.y[order_w], tiled.cells.y[order_t])
    assert np.array_equal(whole.cells.area[order_w], tiled.cells.area[order_t])
    assert np.allclose(whole.cells.mean[order_w], tiled.cells.mean[order_t])
    assert whole.threshold == tiled.threshold and whole.focus == pytest.approx(tiled.focus)


def test_the_table_has_each_channels_mean_and_matches_the_mask(pre: ArrayImage) -> None:
    found = segment(pre, CFG, tile=TILE)
    assert found.mask is not None
    again = measure_cells(pre, found.mask)
    assert np.array_equal(again.id, found.cells.id)
    assert np.allclose(again.mean, found.cells.mean) and np.allclose(again.x, found.cells.x)
    # CD3 is bright in every 2nd nucleus only: its means split into two groups
    cd3 = found.cells.columns()["mean_CD3"]
    assert np.count_nonzero(cd3 > 0.3) == pytest.approx(len(cd3) / 2, rel=0.2)
    row = found.cells.rows()[0]
    assert set(row) == {"id", "y", "x", "area", "mean_DAPI", "mean_CD3", "mean_CD20"}


def test_an_onnx_model_can_replace_the_threshold(
    tmp_path: Path, pre: ArrayImage, centres: np.ndarray
) -> None:
    session = ort.InferenceSession(str(probability_model(tmp_path / "nuclei.onnx")))
    calls: list[tuple[int, ...]] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.shape)
        return np.asarray(session.run(["prob"], {"x": batch})[0])

    found = segment(pre, Segmentation(channel="DAPI", diameter=14, method="onnx"), tile=TILE, predict=predict)
    assert len(calls) == 16 and all(shape[:2] == (1, 1) for shape in calls)
    assert abs(len(found.cells) - len(centres)) <= 0.05 * len(centres)
    # a model that sees nothing finds nothing: the cells come from its map, not the threshold
    blind = segment(
        pre, Segmentation(channel="DAPI", method="onnx"), tile=TILE, predict=lambda b: np.zeros_like(b)
    )
    assert len(blind.cells) == 0


def test_tiles_run_on_a_dask_cluster_of_separate_processes(pre: ArrayImage) -> None:
    from distributed import Client, LocalCluster

    local = segment(pre, CFG, tile=TILE)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        pids = set(client.run(lambda: __import__("os").getpid()).values())
        spread = segment(pre, CFG, tile=TILE, scheduler=cluster.scheduler_address)
    assert len(pids) == 2 and __import__("os").getpid() not in pids
    assert local.mask is not None and spread.mask is not None
    assert np.array_equal(local.mask, spread.mask)


def test_a_large_image_goes_file_to_file_by_tiles(tmp_path: Path, image: ArrayImage, pre: ArrayImage) -> None:
    from tests.analysis.tissue import write_ome

    source = write_ome(tmp_path / "in.ome.tif", image.data, list(image.channels))
    with TiffImage(source) as raw:
        preprocess_file(raw, tmp_path / "pre.ome.tif", Preprocess(), tile=TILE)
    in_memory = segment(pre, CFG, tile=TILE)
    with TiffImage(tmp_path / "pre.ome.tif") as stored:
        assert stored.channels == image.channels
        assert np.abs(stored.read(0, H, 0, W) / 65535.0 - pre.data).max() <= 1 / 65535
        on_disk = segment(stored, CFG, tile=TILE, mask_path=tmp_path / "mask.tif")
    assert on_disk.mask is None
    with TiffImage(tmp_path / "mask.tif") as mask:
        written = mask.read(0, H, 0, W, channel=0)
    assert in_memory.mask is not None
    assert abs(len(on_disk.cells) - len(in_memory.cells)) <= 1
    assert np.count_nonzero(written) == on_disk.covered_pixels
    assert set(np.unique(written)) == {0, *on_disk.cells.id.tolist()}


def test_a_channel_the_image_lacks_is_refused(pre: ArrayImage) -> None:
    with pytest.raises(InvalidInput, match="no channel 'CD8'") as info:
        segment(pre, Segmentation(channel="CD8"))
    assert info.value.field == "params.channel"
    assert open_image(pre.data[:1]).channels == ("ch0",)
