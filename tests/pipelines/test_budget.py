"""The worker's budget of decoded image memory, and stage batches that read their images within it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.app import build_context
from modelyard.context import AppContext
from modelyard.pipelines.models import EventState
from modelyard.pipelines.stages import Item
from modelyard.pipelines.stages.batch import read_within
from modelyard.pipelines.stages.budget import ByteBudget
from modelyard.settings import Settings
from tests.pipelines.conftest import apply_yaml, drain, event, register_model, runs, submit, write_images

SIDE = 100  # RGB images: 30,000 bytes each to decode
PER_IMAGE = SIDE * SIDE * 3


def _items(sizes: list[int]) -> list[Item]:
    return [Item(f"e{i}", f"e{i}", {}, {"raw": size}) for i, size in enumerate(sizes)]


def test_a_batch_reads_in_groups_that_fit_and_gives_the_memory_back() -> None:
    budget = ByteBudget(250)
    groups: list[list[int]] = []

    def run(values: list[int]) -> list[int]:
        assert budget.held <= max(250, *values)
        groups.append(values)
        return [v * 2 for v in values]

    out = read_within(_items([100, 100, 100, 40, 300, 10]), lambda v: v, lambda v: v, budget, run)
    assert [o.value for o in out] == [200, 200, 200, 80, 600, 20]
    assert groups == [[100, 100], [100, 40], [300], [10]]  # an item over the whole budget runs alone
    assert (budget.held, budget.peak) == (0, 300)


def test_an_item_that_cannot_be_sized_or_read_fails_alone() -> None:
    def size(v: int) -> int:
        if v < 0:
            raise ValueError("no size")
        return v

    def read(v: int) -> int:
        if v == 7:
            raise OSError("unreadable")
        return v

    out = read_within(_items([5, -1, 7, 6]), read, size, ByteBudget(100), lambda vs: vs)
    assert [o.value for o in out] == [5, None, None, 6]
    assert [type(o.error).__name__ for o in out] == ["NoneType", "ValueError", "OSError", "NoneType"]


def test_batches_on_several_threads_share_one_budget() -> None:
    budget = ByteBudget(100)
    over: list[int] = []
    lock = threading.Lock()

    def run(values: list[int]) -> list[int]:
        with lock:
            if budget.held > 100:
                over.append(budget.held)
        return values

    def one_batch() -> None:
        read_within(_items([30] * 20), lambda v: v, lambda v: v, budget, run)

    threads = [threading.Thread(target=one_batch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert over == [] and budget.held == 0 and budget.peak <= 100


@pytest.fixture
def budget_ctx(request: pytest.FixtureRequest, pipeline_settings: Settings) -> Iterator[AppContext]:
    context = build_context(pipeline_settings.model_copy(update=request.param))
    yield context
    context.close()


PIPELINE = """
name: embed
raw: image
stages:
  vec: {type: model, model: pool, preprocess: {resize: 224}}
  colours: {type: inferrer, inferrer: palette, params: {top_k: 2}}
"""


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("budget_ctx", "peak"),
    [
        ({"pipeline_worker_image_bytes": 2 * PER_IMAGE + 1}, 2 * PER_IMAGE),
        ({"pipeline_worker_image_bytes": 100 * PER_IMAGE}, 6 * PER_IMAGE),
    ],
    indirect=["budget_ctx"],
)
def test_a_worker_holds_no_more_decoded_images_than_its_setting(
    budget_ctx: AppContext, peak: int, model_dir: Path
) -> None:
    ctx = budget_ctx
    register_model(ctx, model_dir / "image.onnx", "pool")
    apply_yaml(ctx, PIPELINE)
    paths = write_images(ctx.settings.data_dir / "in", 6, (SIDE, SIDE))
    ids = submit(ctx, "embed", *[(p.stem, str(p)) for p in paths])
    drain(ctx)
    assert all(event(ctx, e).state == EventState.COMPLETE for e in ids), [
        (r.stage, r.error) for r in runs(ctx, ids[0]).values()
    ]
    assert ctx.stage_env.get().image_budget.peak == peak


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("budget_ctx", "limit"),
    [
        ({"max_image_pixels": SIDE * SIDE - 1}, "pixel limit"),
        ({"max_image_decoded_bytes": 20_000}, "MiB limit"),
    ],
    indirect=["budget_ctx"],
)
def test_stages_refuse_images_over_the_image_settings(budget_ctx: AppContext, limit: str) -> None:
    ctx = budget_ctx
    apply_yaml(ctx, PIPELINE.replace("  vec: {type: model, model: pool, preprocess: {resize: 224}}\n", ""))
    [path] = write_images(ctx.settings.data_dir / "in", 1, (SIDE, SIDE))
    [eid] = submit(ctx, "embed", (path.stem, str(path)))
    drain(ctx)
    run = runs(ctx, eid)["colours"]
    assert run.error_type == "UndecodableInput" and limit in (run.error or "")
