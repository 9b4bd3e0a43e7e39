"""The tissue image stage kinds in a pipeline: an OME-TIFF event through preprocess, segment, cell table
(JSON and Parquet), quality checks and an overlay, every output stored where the event page shows it; a
threshold that fails the event with its reason; too few channels; spec problems named by field."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from modelyard.context import AppContext
from modelyard.errors import ValidationFailed
from modelyard.pipelines.models import EventState, StageState
from modelyard.pipelines.spec.parse import parse_spec
from modelyard.pipelines.stages import outputs
from tests.analysis.tissue import disc_centres, probability_model, tissue, write_ome
from tests.pipelines.conftest import apply_yaml, drain, event, register_model, runs, submit

H, W, R = 160, 200, 6
NAMES = ["DAPI", "CD3", "CD20"]

SPEC = """
name: tissue
raw: bytes
stages:
  pre:
    type: tissue_preprocess
    channels: [DAPI, CD3, CD20]
    params: {background_radius: 15}
  seg:
    type: tissue_segment
    inputs: [pre]
    params: {channel: DAPI, diameter: 12, tile: 64}
  cells: {type: tissue_cells, inputs: [pre, seg]}
  table: {type: tissue_cells, inputs: [pre, seg], format: parquet}
  qc:
    type: tissue_quality
    inputs: [raw, seg]
    params: {channel: DAPI}
    qc: {min_cells: 10, max_saturated_fraction: 0.01}
  overlay: {type: tissue_overlay, inputs: [pre, seg], params: {channels: [CD3, DAPI]}}
"""


@pytest.fixture
def sample(ctx: AppContext) -> tuple[Path, int]:
    centres = disc_centres(H, W, R, 60, seed=5)
    folder = ctx.settings.data_dir / "scans"
    folder.mkdir(parents=True, exist_ok=True)
    return write_ome(folder / "s1.ome.tif", tissue(H, W, centres, R, seed=5), NAMES), len(centres)


def _stored(ctx: AppContext, run: object) -> bytes:
    return ctx.storage.get_bytes(run.output_key)  # type: ignore[attr-defined]


def test_an_ome_tiff_event_runs_through_every_image_stage(ctx: AppContext, sample: tuple[Path, int]) -> None:
    path, true = sample
    apply_yaml(ctx, SPEC)
    [eid] = submit(ctx, "tissue", ("s1", str(path)))
    drain(ctx)
    assert event(ctx, eid).state == EventState.COMPLETE
    found = runs(ctx, eid)
    assert {s: r.output_kind for s, r in found.items() if s != "raw"} == {
        "pre": "bytes", "seg": "array", "cells": "json", "table": "bytes", "qc": "json", "overlay": "image",
    }  # fmt: skip
    mask = outputs.decode("array", _stored(ctx, found["seg"]))
    assert mask.shape == (H, W)
    cells = outputs.decode("json", _stored(ctx, found["cells"]))
    assert cells["channels"] == NAMES
    assert abs(cells["count"] - true) <= 0.05 * true
    assert cells["count"] == len(np.unique(mask)) - 1
    table = pq.read_table(io.BytesIO(_stored(ctx, found["table"])))
    assert table.num_rows == cells["count"]
    assert table.column_names == ["id", "y", "x", "area", "mean_DAPI", "mean_CD3", "mean_CD20"]
    report = outputs.decode("json", _stored(ctx, found["qc"]))
    assert report["cells"] == cells["count"]
    assert report["saturated_fraction"] == {"DAPI": 0.0, "CD3": 0.0, "CD20": 0.0}
    assert 0 < report["covered_fraction"] < 1 and report["focus"] > 0
    png = Image.open(io.BytesIO(_stored(ctx, found["overlay"])))
    assert png.format == "PNG" and png.size == (W, H)
    assert outputs.media_type(found["overlay"].output_key) == "image/png"


def test_a_quality_threshold_fails_the_event_with_its_reason(
    ctx: AppContext, sample: tuple[Path, int]
) -> None:
    apply_yaml(ctx, SPEC.replace("min_cells: 10", "min_cells: 1000"))
    [eid] = submit(ctx, "tissue", ("s1", str(sample[0])))
    drain(ctx)
    assert event(ctx, eid).state == EventState.FAILED
    qc = runs(ctx, eid)["qc"]
    assert qc.state == StageState.FAILED and qc.attempts == 1  # a verdict on the sample: not retried
    assert qc.error_type == "QualityCheckFailed"
    assert "cells is" in qc.error and "< min_cells 1000" in qc.error
    assert runs(ctx, eid)["overlay"].state == StageState.DONE  # the other outputs are kept


def test_an_image_with_fewer_channels_than_the_spec_names_fails_saying_so(ctx: AppContext) -> None:
    apply_yaml(ctx, SPEC.replace("[DAPI, CD3, CD20]", "[DAPI, CD3, CD20, CD8]"))
    folder = ctx.settings.data_dir / "scans"
    folder.mkdir(parents=True, exist_ok=True)
    path = write_ome(folder / "two.ome.tif", tissue(H, W, disc_centres(H, W, R, 10), R), NAMES)
    [eid] = submit(ctx, "tissue", ("two", str(path)))
    drain(ctx)
    pre = runs(ctx, eid)["pre"]
    assert pre.state == StageState.FAILED and pre.error_type == "InvalidInput"
    assert pre.error == (
        "the spec names 4 channels (DAPI, CD3, CD20, CD8) but the image has 3 (DAPI, CD3, CD20)"
    )


def test_a_registered_onnx_model_segments_in_a_pipeline(
    ctx: AppContext, sample: tuple[Path, int], tmp_path: Path
) -> None:
    register_model(ctx, probability_model(tmp_path / "nuclei.onnx"), "nuclei")
    apply_yaml(
        ctx,
        """
name: onnx-tissue
raw: bytes
stages:
  pre: {type: tissue_preprocess, params: {background_radius: 15}}
  seg:
    type: tissue_segment
    inputs: [pre]
    model: nuclei
    params: {method: onnx, channel: 0, diameter: 12}
  cells: {type: tissue_cells, inputs: [pre, seg]}
""",
    )
    path, true = sample
    [eid] = submit(ctx, "onnx-tissue", ("s1", str(path)))
    drain(ctx)
    found = runs(ctx, eid)
    assert found["seg"].state == StageState.DONE, found["seg"].error
    assert abs(outputs.decode("json", _stored(ctx, found["cells"]))["count"] - true) <= 0.05 * true


def test_spec_problems_are_named_by_field() -> None:
    doc = {
        "name": "bad",
        "raw": "bytes",
        "stages": {
            "pre": {"type": "tissue_preprocess", "channels": "DAPI", "params": {"low_percentile": 120}},
            "seg": {"type": "tissue_segment", "inputs": ["pre"], "params": {"method": "onnx", "diameter": 1}},
            "cells": {"type": "tissue_cells", "inputs": ["seg"], "format": "csv"},
            "qc": {"type": "tissue_quality", "inputs": ["raw", "seg"], "qc": {"min_cels": 1}},
        },
    }
    with pytest.raises(ValidationFailed) as info:
        parse_spec(doc)
    found = {e["field"]: e["detail"] for e in info.value.errors}
    assert found["stages.pre.channels"] == "must be a list of channel names"
    assert found["stages.pre.params.low_percentile"] == "must be a number 0..100"
    assert found["stages.seg.params.diameter"] == "must be an integer 3..500"
    assert found["stages.seg.model"] == "method onnx needs the name of a registered model"
    assert found["stages.cells.inputs"] == "must be two stages: [the image, the segmentation's mask]"
    assert found["stages.cells.format"] == "must be json or parquet"
    assert found["stages.qc.qc.min_cels"].startswith("unknown threshold (known: min_cells, ")


def test_a_heatmap_stage_draws_statistics_posted_as_a_json_event(ctx: AppContext, tmp_path: Path) -> None:
    """A heatmap reads JSON, not an image file: statistics sent as the event's raw data reach it parsed."""
    apply_yaml(
        ctx,
        "name: heat\nraw: json\nstages:\n"
        "  h: {type: tissue_heatmap, params: {matrix: log_odds, labels: [T cell, B cell]}}\n",
    )
    stats = ctx.settings.data_dir / "in" / "stats.json"
    stats.parent.mkdir(parents=True, exist_ok=True)
    stats.write_text('{"log_odds": [[0.5, -1.0], [-1.0, 2.0]]}')
    [eid] = submit(ctx, "heat", ("s1", str(stats)))
    drain(ctx)
    found = runs(ctx, eid)["h"]
    assert found.state == StageState.DONE, found.error
    png = Image.open(io.BytesIO(_stored(ctx, found)))
    assert png.format == "PNG" and png.size[0] > 40
