"""SIGKILL a pipeline worker while events are mid-stage: after a second worker takes over, every event
completes, every stage output exists once with the content its row describes, and nothing was lost.
Real ``modelyard worker`` processes, on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from modelyard.app import build_context
from modelyard.context import AppContext
from modelyard.durable import Worker, WorkState
from modelyard.pipelines import service, submission
from modelyard.pipelines.models import Event, EventState, StageRun, StageState
from modelyard.pipelines.schemas import EventCreate
from modelyard.settings import Settings
from tests.crash.workers import WorkerProcess, eventually
from tests.pipelines.conftest import write_images

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[2]
EVENTS = 48
SPEC = """
name: crashy
stages:
  a: {type: python, callable: "tests.pipelines.stages:record", params: {name: a, seconds: 0.05}, batch_size: 4}
  b: {type: python, callable: "tests.pipelines.stages:record", params: {name: b, seconds: 0.05}, inputs: [a], batch_size: 4}
  c: {type: python, callable: "tests.pipelines.stages:record", params: {name: c, seconds: 0.02}, batch_size: 8}
"""


@pytest.fixture
def crash_ctx(tmp_path: Path, database_url: str) -> Iterator[AppContext]:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        log_to_file=False,
        worker=False,
        _env_file=None,  # type: ignore[call-arg]
    )
    ctx = build_context(settings)
    yield ctx
    ctx.close()


def worker(ctx: AppContext, executor_id: str) -> WorkerProcess:
    """A ``modelyard worker`` that can import the test stages, with claims re-queued after 5 s."""
    proc = WorkerProcess(executor_id, ctx.settings.data_dir, ctx.settings.resolved_database_url())
    proc.env |= {
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
        "MODELYARD_PIPELINE_CLAIM_TIMEOUT_SECONDS": "5",
    }
    return proc.start(ctx)


def counts(ctx: AppContext) -> dict[str, int]:
    with ctx.uow() as session:
        return dict(session.execute(select(StageRun.state, func.count()).group_by(StageRun.state)).all())


def test_killed_worker_loses_nothing_and_writes_nothing_twice(crash_ctx: AppContext, tmp_path: Path) -> None:
    ctx = crash_ctx
    service.apply(ctx, yaml.safe_load(SPEC))
    logs = tmp_path / "executions"
    logs.mkdir()
    paths = write_images(ctx.settings.data_dir / "in", EVENTS)
    submission.submit_events(
        ctx, "crashy", [EventCreate(name=p.stem, source=str(p), params={"log_dir": str(logs)}) for p in paths]
    )
    first = worker(ctx, "crash-w1")
    try:
        eventually(
            lambda: (
                counts(ctx).get(StageState.DONE, 0) >= EVENTS // 2
                and counts(ctx).get(StageState.RUNNING, 0) > 0
            ),
            60,
            "the first worker to be mid-stage",
        )
        first.kill()
    finally:
        first.stop()
    with ctx.uow() as session:  # what the dead worker left mid-stage
        running = session.scalars(select(StageRun).where(StageRun.state == StageState.RUNNING)).all()
        in_flight = {(r.event_id, r.stage) for r in running}
        batches = sorted({r.batch_id for r in running if r.batch_id})
    assert in_flight, "nothing was running when the worker was killed"
    pending = [b for b, s in ctx.dispatcher.get().statuses(batches).items() if s == WorkState.RUNNING]
    second = worker(ctx, "crash-w2")
    try:

        def all_complete() -> bool:
            with ctx.uow() as session:
                return session.scalar(select(func.count()).where(Event.state != EventState.COMPLETE)) == 0

        eventually(all_complete, 120, "every event to complete after the restart")
    finally:
        second.stop()
    with ctx.uow() as session:
        dead = session.get(Worker, "crash-w1")
        assert dead is not None and dead.state == "recovered" and dead.recovered_by == "crash-w2"
        # its batch workflows in flight were recovered (also any that had settled but not yet returned);
        # claims it never started a workflow for were re-queued by the sweep
        assert dead.recovered_workflows >= len(pending)
    check_outputs(ctx, logs, in_flight)


def check_outputs(ctx: AppContext, logs: Path, in_flight: set[tuple[str, str]]) -> None:
    with ctx.uow() as session:
        runs = session.scalars(select(StageRun).where(StageRun.stage != "raw")).all()
        names = dict(session.execute(select(Event.id, Event.name)).all())
    assert len(runs) == 3 * EVENTS
    expected = set()
    for run in runs:
        assert run.state == StageState.DONE and run.writes == 1, (
            run.stage,
            run.event_id,
            run.state,
            run.writes,
        )
        assert run.output_key == f"pipelines/crashy/{run.stage}/{run.event_id}.json"
        assert hashlib.sha256(ctx.storage.get_bytes(run.output_key)).hexdigest() == run.content_hash
        assert run.result == {"event": names[run.event_id]}
        expected.add(run.output_key)
    stored = {info.key for info in ctx.storage.list("pipelines/crashy")}
    assert stored == expected  # one object per stage and event; no strays, no temp files
    for stage in "abc":
        executions = Counter((logs / f"{stage}.log").read_text().split())
        assert set(executions) == {r.event_id for r in runs if r.stage == stage}
        repeated = {eid for eid, n in executions.items() if n > 1}
        # only what was mid-stage at the kill ran again (steps run at least once; outputs are keyed)
        assert repeated <= {eid for eid, s in in_flight if s == stage}
        assert max(executions.values()) <= 2
