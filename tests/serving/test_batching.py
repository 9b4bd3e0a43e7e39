"""Dynamic batching of decoded arrays (pure asyncio, a counting fake run function), and the metrics a
served model's batcher records."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from modelyard.app import build_context
from modelyard.errors import InvalidInput
from modelyard.registry import service as registry
from modelyard.registry.schemas import ModelCreate
from modelyard.serving.batching import BatchConfig, DynamicBatcher
from modelyard.settings import Settings

Arrays = dict[str, np.ndarray]


class CountingModel:
    """Doubles ``x``; records the batch sizes it ran; rejects negative values like a bad input."""

    def __init__(self, gate: threading.Event | None = None):
        self.batches: list[int] = []
        self.gate = gate

    def __call__(self, inputs: Arrays) -> Arrays:
        if self.gate is not None:
            self.gate.wait(5)
        x = inputs["x"]
        if (x < 0).any():
            raise InvalidInput("negative", field="inputs.x")
        self.batches.append(int(x.shape[0]))
        return {"y": x * 2, "s": x.sum(axis=1)}


@pytest.fixture
def executor() -> ThreadPoolExecutor:
    pool = ThreadPoolExecutor(2)
    yield pool  # type: ignore[misc]
    pool.shutdown()


def test_config_from_metadata() -> None:
    assert BatchConfig.from_metadata({}) is None
    assert BatchConfig.from_metadata({"max_batch_size": 1}) is None
    cfg = BatchConfig.from_metadata(
        {"max_batch_size": 8, "max_queue_delay_ms": 5, "preferred_batch_sizes": [4, 2]}
    )
    assert cfg == BatchConfig(8, 0.005, (2, 4))


async def test_concurrent_requests_are_merged_and_split_back(executor: ThreadPoolExecutor) -> None:
    model = CountingModel()
    batcher = DynamicBatcher(model, BatchConfig(64, 0.05), executor)
    results = await asyncio.gather(*[batcher.submit({"x": np.full((1, 3), float(i))}) for i in range(10)])
    for i, out in enumerate(results):
        np.testing.assert_array_equal(out["y"], np.full((1, 3), 2.0 * i))
        assert out["s"].tolist() == [3.0 * i]
    assert sum(model.batches) == 10
    assert len(model.batches) < 10
    batcher.close()


async def test_batch_never_exceeds_max_size(executor: ThreadPoolExecutor) -> None:
    model = CountingModel()
    batcher = DynamicBatcher(model, BatchConfig(4, 0.05), executor)
    outs = await asyncio.gather(*[batcher.submit({"x": np.ones((1, 2)) * i}) for i in range(10)])
    assert [o["y"][0, 0] for o in outs] == [2.0 * i for i in range(10)]
    assert max(model.batches) <= 4
    batcher.close()


async def test_one_bad_request_fails_alone(executor: ThreadPoolExecutor) -> None:
    model = CountingModel()
    batcher = DynamicBatcher(model, BatchConfig(16, 0.05), executor)
    results = await asyncio.gather(
        *[batcher.submit({"x": np.full((1, 2), -1.0 if i == 3 else float(i))}) for i in range(6)],
        return_exceptions=True,
    )
    assert isinstance(results[3], InvalidInput)
    assert [r["y"][0, 0] for i, r in enumerate(results) if i != 3] == [0.0, 2.0, 4.0, 8.0, 10.0]
    batcher.close()


async def test_requests_of_different_trailing_shape_are_not_merged(executor: ThreadPoolExecutor) -> None:
    model = CountingModel()
    batcher = DynamicBatcher(model, BatchConfig(16, 0.05), executor)
    a, b = await asyncio.gather(
        batcher.submit({"x": np.ones((1, 2))}), batcher.submit({"x": np.ones((1, 5))})
    )
    assert a["y"].shape == (1, 2) and b["y"].shape == (1, 5)
    batcher.close()


async def test_observer_sees_each_batch_once_with_every_request_wait(executor: ThreadPoolExecutor) -> None:
    model = CountingModel()
    seen: list[tuple[int, int]] = []
    batcher = DynamicBatcher(
        model, BatchConfig(64, 0.05), executor, lambda size, delays: seen.append((size, len(delays)))
    )
    await asyncio.gather(*[batcher.submit({"x": np.full((1, 3), float(i))}) for i in range(10)])
    assert len(seen) == len(model.batches)  # one observation per batch, not per request
    assert sum(size for size, _ in seen) == 10
    assert all(size == waits for size, waits in seen)
    batcher.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_served_model_observes_batch_size_once_per_run_and_delay_once_per_request(
    settings: Settings, model_dir: Path
) -> None:
    ctx = build_context(settings)
    try:
        with ctx.uow() as session:
            meta = {"max_batch_size": 8, "max_queue_delay_ms": 200}
            registry.create_model(session=session, data=ModelCreate(name="mlp", metadata=meta))
            path = model_dir / "mlp.onnx"
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            registry.add_version(session=session, storage=ctx.storage, name="mlp", path=path, sha256=sha)
        ref = await ctx.inference.resolve("mlp")
        await ctx.inference.load(ref)
        row = {"x": np.ones((1, 64), np.float32)}
        # 11 requests queued together: a full batch of 8 at once, then 3 after the queue delay
        await asyncio.gather(*[ctx.inference.predict(ref, row, "rest") for _ in range(11)])
        sample = ctx.metrics.registry.get_sample_value
        runs = sample("modelyard_inference_seconds_count", {"model": "mlp"})
        assert sample("modelyard_batch_size_count", {"model": "mlp"}) == runs == 2
        assert sample("modelyard_batch_size_sum", {"model": "mlp"}) == 11
        assert sample("modelyard_batch_queue_delay_seconds_count", {"model": "mlp"}) == 11
    finally:
        ctx.close()
