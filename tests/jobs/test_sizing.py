"""Chunk sizes by measured cost, and sub-batches of a running chunk (pure rules, then a real probe)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelyard.context import AppContext
from modelyard.errors import InvalidInput
from modelyard.jobs import sizing
from modelyard.jobs.inputs import Features, Span
from tests.jobs.conftest import register_churn


@pytest.mark.parametrize(
    ("cost", "total", "rows", "slots", "expected"),
    [
        (2e-4, 200_000, 500_000, 2, 10_000),  # a slow MLP: 2 s of work per chunk
        (1e-4, 5_000, 500_000, 2, 2_000),  # one chunk per slot at least (2,500, in whole thousands)
        (1e-4, 5_000, 500_000, 8, 1_000),  # never under the smallest chunk
        (1e-6, 10_000_000, 500_000, 2, 500_000),  # never over the bytes bound
    ],
)
def test_spread_rows_bounds_time_per_chunk_and_fills_every_slot(
    ctx: AppContext, cost: float, total: int, rows: int, slots: int, expected: int
) -> None:
    ctx.settings.worker_concurrency = slots
    assert sizing.spread_rows(ctx, cost, total, rows) == expected


def test_only_a_chunk_costlier_than_a_slots_share_is_spread(ctx: AppContext) -> None:
    ctx.settings.worker_concurrency = 2  # a share of the default 2 s is 1 s
    assert not sizing.costly(ctx, 1e-7, 500_000)  # logistic regression: 0.05 s a chunk
    assert sizing.costly(ctx, 2e-4, 500_000)
    assert not sizing.costly(ctx, None, 500_000)  # not measured (dynamic width): left as it is


def test_merge_joins_adjacent_spans_rows_and_bytes() -> None:
    spans = [Span(i * 10, i * 10 + 10, i * 100, i * 100 + 100) for i in range(5)]
    assert sizing.merge(spans, 2) == [Span(0, 20, 0, 200), Span(20, 40, 200, 400), Span(40, 50, 400, 500)]
    assert sizing.merge(spans, 1) == spans


def test_fast_models_run_a_chunk_in_one_call_slow_ones_in_half_second_steps() -> None:
    assert sizing.step_rows(1e-7, 500_000) == 500_000
    assert sizing.step_rows(None, 500_000) == 500_000
    assert sizing.step_rows(2e-4, 10_000) == 2_500


def test_tiny_runs_do_not_make_a_model_look_slow(ctx: AppContext) -> None:
    sizing.observe(ctx, ("m", 1), 3, 0.001)  # 3 rows: the call's overhead, not the model's cost
    assert sizing.known_cost(ctx, ("m", 1)) is None
    sizing.observe(ctx, ("m", 1), 10_000, 0.01)
    assert sizing.known_cost(ctx, ("m", 1)) == pytest.approx(1e-6)


def test_probe_measures_a_real_model_once(ctx: AppContext, model_dir: Path) -> None:
    register_churn(ctx, model_dir / "mlp.onnx", None, name="mlp")
    ref = ctx.inference.resolve_cached_sync("mlp", "latest")
    features = Features.from_signature(ref.signature, ref.metadata)
    cost = sizing.row_cost(ctx, ref, features)
    assert cost is not None and cost > 0
    assert sizing.known_cost(ctx, ref.key) == cost


def test_a_fast_model_measured_keeps_the_big_chunk_shape(ctx: AppContext) -> None:
    ref = ctx.inference.resolve_cached_sync("churn", "latest")  # logistic regression, 20 features
    cost = sizing.row_cost(ctx, ref, Features.from_signature(ref.signature, ref.metadata))
    assert not sizing.costly(ctx, cost, 500_000)
    assert sizing.step_rows(cost, 500_000) == 500_000


def test_a_model_that_refuses_the_probe_is_sized_by_bytes_alone(ctx: AppContext, model_dir: Path) -> None:
    register_churn(ctx, model_dir / "allocate.onnx", None, name="hungry")
    ref = ctx.inference.resolve_cached_sync("hungry", "latest")
    features = Features(ref.signature["inputs"][0]["name"], 2, np.dtype(np.float32))
    sizing._costs(ctx).clear()
    original = ctx.inference.predict_sync

    def refuses_zeros(ref_: object, inputs: dict[str, np.ndarray]) -> object:
        if not inputs["x"].any():
            raise InvalidInput("zeros are not an input of this model", field="inputs")
        return original(ref_, inputs)  # type: ignore[arg-type]

    ctx.inference.predict_sync = refuses_zeros  # type: ignore[method-assign]
    assert sizing.row_cost(ctx, ref, features) is None
    assert sizing.known_cost(ctx, ref.key) is None
