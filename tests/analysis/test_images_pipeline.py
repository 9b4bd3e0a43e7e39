"""End to end: a generated OME-TIFF in a scanner's folder, moved into the store and submitted by sync (in
parts, as ``modelyard sync`` does), then preprocess -> segment -> cells -> type -> statistics, with a heatmap
and an overlay, every output stored and viewable on the event's page."""

from __future__ import annotations

import io

import numpy as np
import orjson
from fastapi.testclient import TestClient
from PIL import Image

from modelyard.app import create_app
from modelyard.client import Client
from modelyard.context import AppContext
from modelyard.pipelines.models import EventState
from modelyard.sync.run import Sync, sync_once
from tests.analysis.tissue import disc_centres, write_ome
from tests.pipelines.conftest import apply_yaml, drain, event, runs
from tests.web.conftest import api_headers, sign_in

H, W, R = 192, 256, 6

SPEC = """
name: tissue-e2e
raw: bytes
stages:
  pre: {type: tissue_preprocess, channels: [DAPI, CD3, CD20], params: {background_radius: 15}}
  seg: {type: tissue_segment, inputs: [pre], params: {channel: DAPI, diameter: 12, tile: 96}}
  cells: {type: tissue_cells, inputs: [pre, seg]}
  type:
    type: python
    callable: tests.analysis.tissue_stages:cell_types
    inputs: [cells]
    params: {markers: [CD3, CD20], n_types: 2}
  stats: {type: python, callable: "tests.analysis.tissue_stages:statistics", inputs: [cells, type]}
  heatmap: {type: tissue_heatmap, inputs: [stats], params: {matrix: log_odds, labels: [larger, smaller]}}
  z: {type: tissue_heatmap, inputs: [stats], params: {matrix: counts_test.z}}
  overlay: {type: tissue_overlay, inputs: [pre, seg], params: {channels: [CD3, CD20, DAPI]}}
"""


def segregated(centres: np.ndarray) -> np.ndarray:
    """DAPI in every nucleus; CD3 in those on the left half, CD20 in those on the right."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:H, 0:W]
    image = rng.normal(300, 50, (3, H, W))
    for y, x in centres:
        disc = (yy - y) ** 2 + (xx - x) ** 2 <= R * R
        image[0][disc] += 4000
        image[1 if x < W / 2 else 2][disc] += 3000
    return np.clip(image, 0, 65535).astype(np.uint16)


def test_an_ome_tiff_event_goes_from_pixels_to_interaction_statistics(ctx: AppContext) -> None:
    centres = disc_centres(H, W, R, 150, seed=2)
    folder = ctx.settings.data_dir.parent / "scanner"  # the scanner's own disk, outside the data dir
    folder.mkdir(parents=True)
    write_ome(folder / "e2e.ome.tif", segregated(centres), ["DAPI", "CD3", "CD20"])
    apply_yaml(ctx, SPEC)
    with TestClient(create_app(ctx.settings), headers=api_headers()) as http:
        client = Client("http://testserver")
        client.http.close()
        client.http = http
        report = sync_once(Sync(client, folder, "tissue-e2e", part_size=64 * 1024), 0.0, sleep=lambda s: None)
        assert report.stored == ["e2e.ome.tif"]
        [submitted] = http.get("/api/v1/pipelines/tissue-e2e/events").json()["items"]
    eid = submitted["id"]
    assert event(ctx, eid).source.startswith("artifact://sync/")
    drain(ctx)
    assert event(ctx, eid).state == EventState.COMPLETE, {s: r.error for s, r in runs(ctx, eid).items()}
    found = runs(ctx, eid)
    count = len(orjson.loads(ctx.storage.get_bytes(found["cells"].output_key))["cells"])
    assert abs(count - len(centres)) <= 0.05 * len(centres)
    result = orjson.loads(ctx.storage.get_bytes(found["stats"].output_key))
    assert result["n_cells"] == count
    odds = np.array(result["log_odds"])
    # two segregated populations: like touches like more than random mixing would
    assert odds[0, 0] > 0 and odds[1, 1] > 0 and odds[0, 1] < 0
    assert result["counts_test"]["z"][0][1] < -2

    with TestClient(create_app(ctx.settings), follow_redirects=False) as client:
        for stage in ("heatmap", "z", "overlay"):
            got = client.get(f"/api/v1/events/{eid}/stages/{stage}/output", headers=api_headers())
            assert got.status_code == 200 and got.headers["content-type"] == "image/png"
            assert Image.open(io.BytesIO(got.content)).format == "PNG"
        sign_in(client)
        page = client.get(f"/ui/events/{eid}")
        assert page.status_code == 200
        for stage in ("heatmap", "overlay"):  # shown as pictures on the event's page
            assert f'<img src="/ui/events/{eid}/stages/{stage}/output"' in page.text
