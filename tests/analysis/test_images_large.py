"""A scan large enough to matter through a pipeline: the tissue stages read it from its file by tiles and
write their images as tiled TIFFs into the store, so the stage work holds a small part of it at a time;
the cells found are the ones the Python API finds on the same file. And the segmentation tiles of a stage
run on a Dask cluster of separate processes when ``MODELYARD_ANALYSIS_DASK_SCHEDULER`` names it."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile

from modelyard.analysis.images import TiffImage
from modelyard.analysis.preprocess import Preprocess, preprocess_file
from modelyard.analysis.segment import Segmentation, segment
from modelyard.app import build_context
from modelyard.context import AppContext
from modelyard.pipelines.models import EventState
from modelyard.settings import Settings
from tests.analysis.tissue import disc_centres, tissue, write_ome
from tests.pipelines.conftest import apply_yaml, drain, event, runs, submit

# A threshold given: Otsu's sample of the image (``segment.otsu_threshold``) holds about 50 MiB whatever the
# image's size, which at this size would measure the sample, not the tiling.
SIZE, TILE, SPACING, R = 4096, 512, 32, 6
SEG_TILE = 256  # what the stage work holds is a few tiles, whatever the size of the scan
IMAGE_BYTES = 2 * SIZE * SIZE * 2  # two uint16 channels: 64 MiB

SPEC = f"""
name: big
raw: bytes
stages:
  pre: {{type: tissue_preprocess, channels: [DAPI, CD3], params: {{background_radius: 10, tile: {TILE}}}}}
  seg: {{type: tissue_segment, inputs: [pre], params: {{channel: DAPI, diameter: 12, threshold: 0.3, tile: {SEG_TILE}}}}}
  cells: {{type: tissue_cells, inputs: [pre, seg], format: parquet}}
  qc: {{type: tissue_quality, inputs: [raw, seg], params: {{channel: DAPI}}}}
"""


def grid_centres() -> np.ndarray:
    """One nucleus per 32 x 32 square, jittered (at least 24 px apart): 16,384 in all."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[SPACING // 2 : SIZE : SPACING, SPACING // 2 : SIZE : SPACING]
    jitter = rng.uniform(-4, 4, (2, *yy.shape))
    return np.stack([(yy + jitter[0]).ravel(), (xx + jitter[1]).ravel()], axis=1)


def scan_tiles(centres: np.ndarray) -> Iterator[np.ndarray]:
    """The scan's TIFF tiles, channel after channel, each drawn alone: channel 0 bright in every nucleus,
    channel 1 in every other one, on a noisy background."""
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:TILE, 0:TILE]
    for channel in range(2):
        for y0 in range(0, SIZE, TILE):
            for x0 in range(0, SIZE, TILE):
                block = rng.normal(300, 60, (TILE, TILE))
                near = np.flatnonzero(
                    (centres[:, 0] > y0 - R - 1)
                    & (centres[:, 0] < y0 + TILE + R + 1)
                    & (centres[:, 1] > x0 - R - 1)
                    & (centres[:, 1] < x0 + TILE + R + 1)
                )
                for i in near:
                    if channel == 1 and i % 2:
                        continue
                    cy, cx = centres[i, 0] - y0, centres[i, 1] - x0
                    block[(yy - cy) ** 2 + (xx - cx) ** 2 <= R * R] += 4000 if channel == 0 else 3000
                yield np.clip(block, 0, 65535).astype(np.uint16)


@pytest.fixture
def big_settings(pipeline_settings: Settings) -> Settings:
    """Raw data over 1 MiB is not kept in memory: the scan is never read whole to be fetched."""
    return pipeline_settings.model_copy(update={"pipeline_raw_cache_bytes": 1024 * 1024})


@pytest.fixture
def big_ctx(big_settings: Settings) -> Iterator[AppContext]:
    context = build_context(big_settings)
    yield context
    context.close()


def test_a_large_scan_goes_through_the_stages_by_tiles_and_finds_what_the_api_finds(
    big_ctx: AppContext, tmp_path: Path
) -> None:
    ctx = big_ctx
    centres = grid_centres()
    path = ctx.settings.data_dir / "scans" / "big.ome.tif"
    path.parent.mkdir(parents=True)
    tifffile.imwrite(
        path,
        scan_tiles(centres),
        shape=(2, SIZE, SIZE),
        dtype=np.uint16,
        tile=(TILE, TILE),
        photometric="minisblack",
        metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "CD3"]}},
    )
    assert path.stat().st_size >= IMAGE_BYTES
    apply_yaml(ctx, SPEC)
    [eid] = submit(ctx, "big", ("big", str(path)))

    tracemalloc.start()
    try:
        drain(ctx)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    found = runs(ctx, eid)
    assert event(ctx, eid).state == EventState.COMPLETE, {s: r.error for s, r in found.items()}
    print(f"stage work peak {peak / 2**20:.1f} MiB for a {IMAGE_BYTES / 2**20:.0f} MiB scan")
    assert peak < IMAGE_BYTES / 2

    # the images are stored as tiled TIFFs, read by tiles like the scan
    assert found["pre"].output_key.endswith(".tif") and found["seg"].output_key.endswith(".tif")
    with TiffImage(ctx.storage.local_path(found["seg"].output_key)) as mask:
        assert mask.shape == (1, SIZE, SIZE) and mask.dtype == np.uint32
        stored_cells = max(
            int(mask.read(y, y + TILE, 0, SIZE, channel=0).max()) for y in range(0, SIZE, TILE)
        )
    table = pq.read_table(io.BytesIO(ctx.storage.get_bytes(found["cells"].output_key)))

    # the Python API on the same file
    with TiffImage(path) as scan:
        preprocess_file(scan, tmp_path / "pre.ome.tif", Preprocess(background_radius=10), tile=TILE)
    with TiffImage(tmp_path / "pre.ome.tif") as pre:
        api = segment(
            pre,
            Segmentation(channel="DAPI", diameter=12, threshold=0.3),
            tile=SEG_TILE,
            mask_path=tmp_path / "m.tif",
        )
    with (
        TiffImage(ctx.storage.local_path(found["pre"].output_key)) as stored,
        TiffImage(tmp_path / "pre.ome.tif") as ours,
    ):
        assert stored.channels == ("DAPI", "CD3")
        for y in range(0, SIZE, TILE):  # the same pixels, a band at a time
            assert np.array_equal(stored.read(y, y + TILE, 0, SIZE), ours.read(y, y + TILE, 0, SIZE))
    assert table.num_rows == stored_cells == len(api.cells)
    assert abs(len(api.cells) - len(centres)) <= 0.05 * len(centres)
    assert np.allclose(np.sort(table.column("area").to_numpy()), np.sort(api.cells.area))
    report = ctx.storage.get_bytes(found["qc"].output_key)
    assert f'"cells":{len(api.cells)}'.encode() in report.replace(b" ", b"")


H = W = 256


def test_a_segmentation_stage_runs_its_tiles_on_the_dask_scheduler_of_the_setting(
    pipeline_settings: Settings,
) -> None:
    from distributed import LocalCluster

    centres = disc_centres(H, W, R, 120, seed=5)
    spec = """
name: spread
raw: bytes
stages:
  seg: {type: tissue_segment, params: {channel: DAPI, diameter: 12, tile: 64}}
"""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        settings = pipeline_settings.model_copy(update={"analysis_dask_scheduler": cluster.scheduler_address})
        ctx = build_context(settings)
        try:
            folder = ctx.settings.data_dir / "scans"
            folder.mkdir(parents=True)
            source = write_ome(folder / "s.ome.tif", tissue(H, W, centres, R, channels=2), ["DAPI", "CD3"])
            apply_yaml(ctx, spec)
            [eid] = submit(ctx, "spread", ("s", str(source)))
            drain(ctx)
            found = runs(ctx, eid)
            assert event(ctx, eid).state == EventState.COMPLETE, {s: r.error for s, r in found.items()}
            mask = ctx.storage.get_bytes(found["seg"].output_key)
        finally:
            ctx.close()
        ran = cluster.scheduler.task_prefixes["run"].state_counts  # type: ignore[union-attr]
    assert ran["memory"] == (H // 64) * (W // 64)  # every tile computed by the cluster's workers
    with TiffImage(source) as image:
        local = segment(image, Segmentation(channel="DAPI", diameter=12), tile=64)
    assert local.mask is not None
    assert np.array_equal(tifffile.imread(io.BytesIO(mask)).reshape(H, W), local.mask)
