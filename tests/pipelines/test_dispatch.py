"""The dispatcher: parallel stages, per-stage concurrency, stale claims, and a batch repeated after a crash."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from modelyard.context import AppContext
from modelyard.durable import ClaimLoop, WorkState
from modelyard.pipelines import dispatch
from modelyard.pipelines.models import Event, EventState, StageState
from modelyard.pipelines.run import runner, settle
from modelyard.storage import MemoryStorage, ObjectInfo
from tests.pipelines.conftest import apply_yaml, claim, drain, event, runs, stage_loop, submit, write_images

PARALLEL = """
name: parallel
stages:
  a: {type: python, callable: "tests.pipelines.stages:size"}
  b: {type: python, callable: "tests.pipelines.stages:sleepy", inputs: [a], params: {seconds: 0.2}, cache: false}
  c: {type: python, callable: "tests.pipelines.stages:sleepy", inputs: [a], params: {seconds: 0.2}, cache: false}
  d: {type: python, callable: "tests.pipelines.stages:join", inputs: [b, c]}
"""


def run_threaded(ctx: AppContext, done: Any, timeout: float = 30.0) -> ClaimLoop:
    pool = ThreadPoolExecutor(8)

    def start(batch_id: str) -> Future[Any]:
        return pool.submit(runner.run_batch, ctx, batch_id)

    dispatcher = stage_loop(ctx, start)
    stop = threading.Event()
    thread = threading.Thread(target=dispatcher.serve, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while not done():
            assert time.monotonic() < deadline, "pipeline did not finish in time"
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(5)
        pool.shutdown()
    return dispatcher


def test_independent_stages_run_in_parallel(ctx: AppContext) -> None:
    apply_yaml(ctx, PARALLEL)
    [path] = write_images(ctx.settings.data_dir / "in", 1)
    [eid] = submit(ctx, "parallel", ("e", str(path)))
    run_threaded(ctx, lambda: event(ctx, eid).state == EventState.COMPLETE)
    r = runs(ctx, eid)
    # each started before the other finished: they ran side by side, not in turn (how much faster that
    # is, is the pipelines benchmark's business, not a timed test's)
    assert r["b"].started_at < r["c"].finished_at and r["c"].started_at < r["b"].finished_at


def test_stage_concurrency_limits_batches_over_all_workers(ctx: AppContext) -> None:
    apply_yaml(
        ctx,
        """
name: narrow
stages:
  s: {type: python, callable: "tests.pipelines.stages:sleepy", params: {seconds: 0.02}, concurrency: 1, batch_size: 2, cache: false}
""",
    )
    paths = write_images(ctx.settings.data_dir / "in", 6)
    ids = submit(ctx, "narrow", *[(p.stem, str(p)) for p in paths])
    seen: list[int] = []

    def done() -> bool:
        seen.append(dispatch.running_batches(ctx).get((runs(ctx, ids[0])["s"].pipeline_id, "s"), 0))
        return all(event(ctx, e).state == EventState.COMPLETE for e in ids)

    run_threaded(ctx, done)
    assert max(seen) == 1
    assert len({runs(ctx, e)["s"].batch_id for e in ids}) == 3


def test_a_claim_counts_what_it_took_and_an_empty_one_is_none(ctx: AppContext) -> None:
    apply_yaml(ctx, PARALLEL)
    paths = write_images(ctx.settings.data_dir / "in", 3)
    ids = submit(ctx, "parallel", *[(p.stem, str(p)) for p in paths])
    pipeline_id = runs(ctx, ids[0])["raw"].pipeline_id
    first = claim(ctx, pipeline_id, "raw", 2)
    second = claim(ctx, pipeline_id, "raw", 2)
    assert first is not None and second is not None and (first[1], second[1]) == (2, 1)
    assert claim(ctx, pipeline_id, "raw", 2) is None  # nothing ready: no empty batch
    assert [runner.run_batch(ctx, b[0])["runs"] for b in (first, second)] == [2, 1]
    drain(ctx)
    assert all(event(ctx, e).state == EventState.COMPLETE for e in ids)


def test_stale_claims_are_made_ready_again(ctx: AppContext) -> None:
    apply_yaml(ctx, PARALLEL)
    [path] = write_images(ctx.settings.data_dir / "in", 1)
    [eid] = submit(ctx, "parallel", ("e", str(path)))
    claimed = claim(ctx, runs(ctx, eid)["raw"].pipeline_id, "raw", 10)
    assert claimed is not None
    assert runs(ctx, eid)["raw"].state == StageState.RUNNING
    assert (
        dispatch.STAGE_RUNS.sweep(ctx, lambda ids: {i: WorkState.RUNNING for i in ids}) == 0
    )  # still running somewhere
    assert dispatch.STAGE_RUNS.sweep(ctx, lambda ids: {}) == 1  # the workflow never started
    assert runs(ctx, eid)["raw"].state == StageState.READY
    drain(ctx)
    assert event(ctx, eid).state == EventState.COMPLETE


def test_reconcile_advances_an_event_left_behind(ctx: AppContext) -> None:
    from sqlalchemy import update

    from modelyard.pipelines.models import StageRun

    apply_yaml(ctx, PARALLEL)
    [path] = write_images(ctx.settings.data_dir / "in", 1)
    [eid] = submit(ctx, "parallel", ("e", str(path)))
    drain(ctx)
    with ctx.uow() as session:  # as if the readiness of d had been lost
        session.execute(
            update(StageRun).where(StageRun.event_id == eid, StageRun.stage == "d").values(state="pending")
        )
        session.execute(update(Event).where(Event.id == eid).values(state="running"))
    assert dispatch.reconcile(ctx, older_than_seconds=0) == 1
    drain(ctx)
    assert event(ctx, eid).state == EventState.COMPLETE


class CountingStorage(MemoryStorage):
    """Counts writes per key."""

    def __init__(self) -> None:
        super().__init__()
        self.puts: dict[str, int] = {}

    def put_stream(self, key: str, chunks: Any, *, max_bytes: int | None = None) -> ObjectInfo:
        self.puts[key] = self.puts.get(key, 0) + 1
        return super().put_stream(key, chunks, max_bytes=max_bytes)


def test_a_batch_repeated_after_a_crash_writes_nothing_twice(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CountingStorage()
    ctx.storage = store
    apply_yaml(ctx, 'name: once\nstages:\n  a: {type: python, callable: "tests.pipelines.stages:chatty"}\n')
    paths = write_images(ctx.settings.data_dir / "in", 3)
    ids = submit(ctx, "once", *[(p.stem, str(p)) for p in paths])
    pipeline_id = runs(ctx, ids[0])["a"].pipeline_id
    fetch = claim(ctx, pipeline_id, "raw", 10)
    assert fetch is not None
    runner.run_batch(ctx, fetch[0])
    claimed = claim(ctx, pipeline_id, "a", 10)
    assert claimed is not None
    real_settle = settle.settle
    monkeypatch.setattr(settle, "settle", lambda *a: (_ for _ in ()).throw(SystemExit("killed")))
    with pytest.raises(SystemExit):
        runner.run_batch(ctx, claimed[0])  # outputs written, then the process "dies" before settling
    monkeypatch.setattr(settle, "settle", real_settle)
    runner.run_batch(ctx, claimed[0])  # the recovered workflow runs the step again
    for eid in ids:
        r = runs(ctx, eid)["a"]
        assert r.state == StageState.DONE and r.writes == 1 and r.attempts == 2
        assert store.puts[r.output_key] == 1
