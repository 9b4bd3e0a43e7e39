"""The tissue_type and tissue_stats stage kinds in a pipeline: a cell table event typed and analysed, its
outputs stored; bad cell data failing the stage with the rule as its reason; spec problems by field."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest

from modelyard.analysis.errors import InvalidCells
from modelyard.analysis.stages_stats import read_table
from modelyard.context import AppContext
from modelyard.errors import ValidationFailed
from modelyard.pipelines.models import EventState, StageState
from modelyard.pipelines.stages import outputs
from tests.pipelines.conftest import apply_yaml, drain, event, runs, submit

SPEC = """
name: cells
raw: json
stages:
  typed:
    type: tissue_type
    params: {n_types: 2, method: kmeans, seed: 3}
  table: {type: tissue_type, format: parquet, params: {n_types: 2, method: gmm}}
  stats:
    type: tissue_stats
    inputs: [typed]
    params: {n_types: 2, k: 4, n_perms: 30, seed: 1}
  given:
    type: tissue_stats
    params: {n_types: 3, type_column: label, radius: 2.5, n_perms: 0, variant: upper_triangle}
"""


def cell_table(folder: Path, name: str, *, n: int = 400, label_max: int = 2) -> Path:
    """Cells on a grid: left half bright in CD3, right half in CD20 (the 'tissue_cells' JSON shape)."""
    rng = np.random.default_rng(0)
    side = int(np.sqrt(n))
    ys, xs = np.divmod(np.arange(side * side), side)
    left = xs < side // 2
    rows = [
        {
            "id": i + 1,
            "y": float(y),
            "x": float(x),
            "area": 50,
            "mean_CD3": float((5.0 if on_left else 0.5) + rng.normal(0, 0.2)),
            "mean_CD20": float((0.5 if on_left else 5.0) + rng.normal(0, 0.2)),
            "label": int(min(x // (side // 3), label_max)),
        }
        for i, (y, x, on_left) in enumerate(zip(ys, xs, left, strict=True))
    ]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_bytes(orjson.dumps({"channels": ["CD3", "CD20"], "count": len(rows), "cells": rows}))
    return path


def _stored(ctx: AppContext, run: object) -> bytes:
    return ctx.storage.get_bytes(run.output_key)  # type: ignore[attr-defined]


def test_a_cell_table_is_typed_and_its_statistics_stored(ctx: AppContext) -> None:
    apply_yaml(ctx, SPEC)
    [eid] = submit(ctx, "cells", ("s1", str(cell_table(ctx.settings.data_dir / "in", "s1"))))
    drain(ctx)
    found = runs(ctx, eid)
    assert event(ctx, eid).state == EventState.COMPLETE, {s: r.error for s, r in found.items()}
    typed = outputs.decode("json", _stored(ctx, found["typed"]))
    left = [c["type"] for c in typed["cells"] if c["x"] < 10]
    right = [c["type"] for c in typed["cells"] if c["x"] >= 10]
    assert len(set(left)) == 1 and len(set(right)) == 1 and left[0] != right[0]  # the two halves
    table = pq.read_table(io.BytesIO(_stored(ctx, found["table"])))
    assert "type" in table.column_names and table.num_rows == 400

    result = outputs.decode("json", _stored(ctx, found["stats"]))
    assert result["n_cells"] == 400 and result["neighbours"] == {"k": 4} and result["pairs"] == 1600
    assert result["frequencies"]["counts"] == [200, 200]
    m = np.array(result["counts"])
    assert m.sum() == 2 * 1600 and np.array_equal(m, m.T)
    odds = np.array(result["log_odds"], dtype=float)
    assert odds[0, 0] > 0 and odds[1, 1] > 0 and odds[0, 1] < 0  # segregated halves
    assert result["counts_test"]["z"][0][1] < -5 and result["n_perms"] == 30

    given = outputs.decode("json", _stored(ctx, found["given"]))
    assert given["variant"] == "upper_triangle" and given["neighbours"] == {"radius": 2.5}
    assert "counts_test" not in given


def test_bad_cell_data_fails_the_stage_with_the_rule(ctx: AppContext) -> None:
    apply_yaml(
        ctx,
        SPEC.replace("type_column: label", "type_column: label, n_types: 2").replace(
            "params: {n_types: 3, type_column", "params: {type_column"
        ),
    )
    [eid] = submit(ctx, "cells", ("s1", str(cell_table(ctx.settings.data_dir / "in", "s1"))))
    drain(ctx)
    given = runs(ctx, eid)["given"]
    assert given.state == StageState.FAILED and given.error_type == "InvalidCells"
    assert given.error == "types[12] is 2, not below the declared n_types of 2"
    assert runs(ctx, eid)["stats"].state == StageState.DONE  # the other stages are unaffected


def test_spec_problems_are_named_by_field(ctx: AppContext) -> None:
    bad = SPEC.replace("k: 4", "k: 4, radius: 3").replace("method: gmm", "method: tree")
    bad = bad.replace("variant: upper_triangle", "variant: half").replace("n_perms: 30", "n_perms: -1")
    with pytest.raises(ValidationFailed) as info:
        apply_yaml(ctx, bad.replace("params: {n_types: 2, method: kmeans, seed: 3}", "params: {seed: 3}"))
    fields = {p["field"] for p in info.value.extra["errors"]}
    assert {
        "stages.typed.params.n_types",
        "stages.table.params.method",
        "stages.stats.params",
        "stages.stats.params.n_perms",
        "stages.given.params.variant",
    } <= fields


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ([], "empty"),
        (b"not a table", "neither Parquet nor JSON"),
        ({"x": [1, 2], "y": [1]}, "differ in length"),
        ([{"x": 1, "y": 2}, {"x": 1}], "has no 'y'"),
        (42, "not a cell table"),
    ],
)
def test_bad_tables_are_refused(value: object, says: str) -> None:
    with pytest.raises(InvalidCells, match=says):
        read_table(value)
