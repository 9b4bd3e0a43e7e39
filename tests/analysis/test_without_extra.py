"""Without the analysis extra (its packages hidden: a ``None`` entry in ``sys.modules`` is what Python
does for a package that is not there): the tissue stage kinds stay registered and listed, a spec naming one
is refused with a 422 that says what to install, a stage run on a worker without the extra fails with that
reason, and the Python API raises an ``ImportError`` naming the extra."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from PIL import Image

import modelyard.analysis
from modelyard.context import AppContext
from modelyard.extras import EXTRAS
from modelyard.pipelines.models import StageState
from tests.analysis.test_stats_stages import cell_table
from tests.pipelines.conftest import apply_yaml, drain, runs, submit
from tests.test_architecture import ANALYSIS_WITHOUT_EXTRA

EXTRA = EXTRAS["analysis"]
API = sorted(
    p.stem
    for p in Path(modelyard.analysis.__file__).parent.glob("*.py")
    if p.stem not in ANALYSIS_WITHOUT_EXTRA
)
"""The modules of the Python API that need the extra."""
INSTALL = "pip install 'modelyard[analysis]'"
SPEC = """
name: tissue
raw: bytes
stages:
  seg: {type: tissue_segment, params: {channel: 0, diameter: 8}}
  cells: {type: tissue_cells, inputs: [raw, seg]}
"""
YAML = {"Content-Type": "application/yaml"}


def hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_a_spec_naming_a_tissue_kind_is_a_422_saying_what_to_install(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    hide(monkeypatch, *EXTRA)
    resp = api.post("/api/v1/pipelines", content=SPEC, headers=YAML)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["code"] == "validation-failed"
    needs = (
        "needs the analysis extra (scipy, skimage, sklearn, dask, distributed, tifffile, zarr not installed)"
    )
    assert body["errors"] == [
        {"field": "stages.seg.type", "detail": f"stage type tissue_segment {needs}: {INSTALL}"},
        {"field": "stages.cells.type", "detail": f"stage type tissue_cells {needs}: {INSTALL}"},
    ]
    assert body["detail"].endswith(INSTALL)
    assert api.get("/api/v1/pipelines/tissue").status_code == 404
    assert api.get("/api/v1/pipelines").json()["items"] == []

    unknown = api.post("/api/v1/pipelines", json={"name": "x", "stages": {"a": {"type": "tissue"}}})
    listed = unknown.json()["errors"][0]["detail"]
    kinds = ["tissue_preprocess", "tissue_segment", "tissue_cells", "tissue_quality", "tissue_overlay"]
    assert all(kind in listed for kind in [*kinds, "tissue_heatmap", "tissue_type", "tissue_stats"])

    bad_params = SPEC.replace("diameter: 8", "diameter: 1")
    found = api.post("/api/v1/pipelines", content=bad_params, headers=YAML).json()["errors"]
    assert {"field": "stages.seg.params.diameter", "detail": "must be an integer 3..500"} in found

    # tissue_heatmap draws with Pillow alone: not refused
    heatmap_only = {"name": "heat", "raw": "json", "stages": {"h": {"type": "tissue_heatmap"}}}
    assert api.post("/api/v1/pipelines", json=heatmap_only).status_code == 201


def test_the_refusal_names_only_the_missing_packages(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "skimage")
    resp = api.post("/api/v1/pipelines", content=SPEC, headers=YAML)
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["detail"] == (
        f"stage type tissue_segment needs the analysis extra (skimage not installed): {INSTALL}"
    )
    monkeypatch.undo()
    assert api.post("/api/v1/pipelines", content=SPEC, headers=YAML).status_code == 201


def test_a_worker_without_the_extra_fails_the_stage_saying_what_to_install(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_yaml(
        ctx,
        "name: cells\nraw: json\nstages:\n  stats: {type: tissue_stats, params: {n_types: 3, type_column: label}, "
        "retry: {max_attempts: 1}}\n",  # a missing package is retried like any system failure: once here
    )
    hide(monkeypatch, *EXTRA)
    for name in ("neighbours", "stats", "typing"):  # as if this process had never imported them
        monkeypatch.delitem(sys.modules, f"modelyard.analysis.{name}", raising=False)
        monkeypatch.delattr(modelyard.analysis, name, raising=False)
    [eid] = submit(ctx, "cells", ("s1", str(cell_table(ctx.settings.data_dir / "in", "s1"))))
    drain(ctx)
    run = runs(ctx, eid)["stats"]
    assert run.state == StageState.FAILED and run.error_type == "ExtraMissing"
    assert run.error == (
        "modelyard.analysis.neighbours needs the analysis extra "
        f"(scipy, skimage, sklearn, dask, distributed, tifffile, zarr not installed): {INSTALL}"
    )


_PYTHON_API = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
from modelyard.pipelines.spec.kinds import stage_kinds
from modelyard.analysis import images, params, render

assert "tissue_stats" in stage_kinds() and params.segment_problems({"diameter": 1})
print(images.open_image(open(sys.argv[2], "rb").read()).shape)
try:
    images.open_image(open(sys.argv[3], "rb").read())
except ImportError as exc:
    print(type(exc).__name__, exc.name, exc)
for name in sys.argv[4:]:
    try:
        __import__(f"modelyard.analysis.{name}")
        print(name, "imported")
    except ImportError as exc:
        print(name, type(exc).__name__, exc)
"""


def test_the_python_api_raises_an_import_error_naming_the_extra(tmp_path: Path) -> None:
    png, tiff = tmp_path / "a.png", tmp_path / "a.tif"
    Image.new("RGB", (6, 4), (1, 2, 3)).save(png)
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((2, 4, 6), np.uint16))
    tiff.write_bytes(buf.getvalue())
    probe = subprocess.run(
        [sys.executable, "-c", _PYTHON_API, ",".join(EXTRA), str(png), str(tiff), *API],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    needs = f"needs the analysis extra (scipy, skimage, sklearn, dask, distributed, tifffile, zarr not installed): {INSTALL}"
    lines = probe.stdout.splitlines()
    assert lines[:2] == ["(3, 4, 6)", f"ExtraMissing scipy reading a TIFF {needs}"]
    assert {"neighbours", "preprocess", "quality", "segment", "stats", "typing"} <= set(API)
    assert [line.split(" ", 2)[:2] for line in lines[2:]] == [[name, "ExtraMissing"] for name in API]
    assert f"stats ExtraMissing modelyard.analysis.stats {needs}" in lines
