"""Pictures drawn on the server: they must show what they are given, escaped."""

from __future__ import annotations

import numpy as np

from modelyard.web.charts import dag, depths, finished_lines, histogram, sparkline


def test_depths_put_each_stage_after_its_deepest_input() -> None:
    stages = {"a": ["raw"], "b": ["raw"], "c": ["a", "b"], "d": ["c", "a"]}
    assert depths(stages) == {"raw": 0, "a": 1, "b": 1, "c": 2, "d": 3}


def test_dag_draws_a_node_per_stage_and_an_edge_per_input() -> None:
    svg = dag({"a": ["raw"], "b": ["a"], "c": ["a", "raw"]}, states={"b": "failed"})
    assert svg.count('class="node') == 4  # raw + 3 stages
    assert svg.count('class="edge"') == 4
    assert 'class="node state-failed"' in svg


def test_dag_escapes_stage_names() -> None:
    svg = dag({"<script>": ["raw"]})
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_dag_survives_a_cycle_or_an_unknown_input() -> None:
    assert "<svg" in dag({"a": ["b"], "b": ["a"], "c": ["ghost"]})


def test_sparkline_scales_values_into_the_box() -> None:
    svg = sparkline([0.0, 5.0, 10.0], width=100, height=20)
    assert 'points="0.0,18.0 50.0,10.0 100.0,2.0"' in svg
    assert "polyline" not in sparkline([1.0])


def test_histogram_counts_every_finite_value() -> None:
    data = np.array([0.0, 0.0, 1.0, np.nan, np.inf], dtype=np.float32)
    svg = histogram(data, bins=2)
    assert svg.count("<rect") == 2
    assert ": 2</title>" in svg and ": 1</title>" in svg
    assert histogram(np.array(["a", "b"])) == ""


def test_finished_lines_draw_a_line_per_queue_named_with_its_hour() -> None:
    history = {"step_seconds": 60, "queues": [{"name": "jobs", "finished": [0, 2, 1] + [0] * 57}]}
    (line,) = finished_lines(history).values()
    assert "<title>jobs: 3 finished in the last 60 min, per minute</title>" in line
    assert line.split('points="')[1].split('"')[0].count(",") == 60  # a point per minute
    assert finished_lines({"step_seconds": 60, "queues": []}) == {}
