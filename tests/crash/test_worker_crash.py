"""Real worker processes killed on purpose: no job loses or duplicates a row; chunks run once; schedules
fire once per slot. On SQLite and PostgreSQL (the multi-worker tests on PostgreSQL)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import select

from modelyard.app import build_context
from modelyard.context import AppContext
from modelyard.jobs import service, submission
from modelyard.jobs.models import Job, JobChunk
from modelyard.jobs.schemas import JobCreate, JobOptions
from modelyard.ops import queues
from modelyard.ops.schemas import WorkerPublic
from modelyard.registry import service as registry
from modelyard.registry.schemas import ModelCreate
from modelyard.schedules import service as schedules
from modelyard.schedules.schemas import ScheduleCreate
from modelyard.settings import Settings
from tests.crash.workers import WorkerProcess, eventually, slow_model

ROWS, CHUNK = 3000, 500


@pytest.fixture
def ctx(tmp_path: Path, database_url: str) -> Iterator[AppContext]:
    """The test's own view of the database and store (it runs no worker), with a slow model and an input."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        log_to_file=False,
        worker=False,
        _env_file=None,  # type: ignore[call-arg]
    )
    context = build_context(settings)
    model = slow_model(tmp_path / "slow.onnx")
    with context.uow() as session:
        registry.create_model(session=session, data=ModelCreate(name="slow"))
        registry.add_version(
            session=session,
            storage=context.storage,
            name="slow",
            path=model,
            sha256=hashlib.sha256(model.read_bytes()).hexdigest(),
        )
    np.save(tmp_path / "in.npy", np.random.default_rng(0).normal(size=(ROWS, 20)).astype(np.float32))
    context.storage.put_file("in/rows.npy", tmp_path / "in.npy")
    yield context
    context.close()


@pytest.fixture
def workers(ctx: AppContext, database_url: str) -> Iterator[list[WorkerProcess]]:
    """Worker processes a test starts; all stopped at the end."""
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.stop()


def start(
    ctx: AppContext, workers: list[WorkerProcess], executor_id: str, concurrency: int = 2
) -> WorkerProcess:
    worker = WorkerProcess(
        executor_id, ctx.settings.data_dir, ctx.settings.resolved_database_url(), concurrency
    )
    workers.append(worker.start(ctx))
    return worker


def submit(ctx: AppContext, n: int) -> list[str]:
    options = JobOptions(chunk_rows=CHUNK)
    return [
        submission.submit(ctx, JobCreate(model="slow", uri="in/rows.npy", options=options)).id
        for _ in range(n)
    ]


def all_final(ctx: AppContext, ids: list[str]) -> list[Job]:
    with ctx.uow() as session:
        jobs = list(session.scalars(select(Job).where(Job.id.in_(ids))))
    return jobs if all(j.state in ("succeeded", "failed", "cancelled") for j in jobs) else []


def chunk_rows(ctx: AppContext, ids: list[str]) -> list[JobChunk]:
    with ctx.uow() as session:
        return list(session.scalars(select(JobChunk).where(JobChunk.job_id.in_(ids))))


def assert_exact_output(ctx: AppContext, job_id: str) -> None:
    _, tables = service.results(ctx, job_id)
    rows = pa.concat_tables(list(tables)).column("row").to_numpy()
    assert len(rows) == ROWS, f"{len(rows)} output rows, expected {ROWS}"
    np.testing.assert_array_equal(np.sort(rows), np.arange(ROWS))  # none lost, none duplicated


def test_sigkill_mid_job_loses_and_duplicates_nothing(ctx: AppContext, workers: list[WorkerProcess]) -> None:
    first = start(ctx, workers, "crash-a")
    ids = submit(ctx, 2)

    def mid_job() -> bool:
        # some chunks finished and one in its step (a chunk takes ~0.2 s), so the kill lands mid-job;
        # no tighter timing window: a slower or faster machine must not make the moment unreachable
        chunks = chunk_rows(ctx, ids)
        done = sum(c.state == "done" for c in chunks)
        return 2 <= done < len(ids) * ROWS // CHUNK - 2 and any(c.state == "running" for c in chunks)

    eventually(mid_job, 60, "worker a to be mid-job")
    first.kill()
    start(ctx, workers, "crash-b")
    jobs = eventually(lambda: all_final(ctx, ids), 60, "every job to finish on worker b")
    assert [j.state for j in jobs] == ["succeeded"] * len(ids)
    for job_id in ids:
        assert_exact_output(ctx, job_id)
    chunks = chunk_rows(ctx, ids)
    assert {c.executor_id for c in chunks} == {"crash-a", "crash-b"}
    assert all(c.completions >= 1 for c in chunks)
    assert max(c.attempts for c in chunks) <= 2  # a chunk cut short ran again, once

    # the queue page shows that worker b recovered worker a's work
    def recovered() -> WorkerPublic | None:
        found = next(w for w in queues.snapshot(ctx).workers if w.executor_id == "crash-a")
        return found if found.state == "recovered" else None

    dead = eventually(recovered, 30, "worker a to be marked recovered")
    assert dead.recovered_by == "crash-b" and dead.recovered_workflows >= 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_three_workers_share_one_queue_and_no_chunk_completes_twice(
    ctx: AppContext, workers: list[WorkerProcess]
) -> None:
    for name in ("share-1", "share-2", "share-3"):
        start(ctx, workers, name, concurrency=1)
    ids = submit(ctx, 4)
    jobs = eventually(lambda: all_final(ctx, ids), 90, "every job to finish")
    assert [j.state for j in jobs] == ["succeeded"] * len(ids)
    chunks = chunk_rows(ctx, ids)
    assert len(chunks) == len(ids) * ROWS // CHUNK
    assert [c for c in chunks if c.completions != 1 or c.attempts != 1] == []
    assert len({c.executor_id for c in chunks}) >= 2  # the queue really was shared
    for job_id in ids:
        assert_exact_output(ctx, job_id)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_schedule_fires_once_per_slot_with_two_workers(
    ctx: AppContext, workers: list[WorkerProcess]
) -> None:
    for name in ("sched-1", "sched-2"):
        start(ctx, workers, name)
    ctx.storage.put_bytes("in/tiny.csv", b"1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20\n")
    schedules.create(
        ctx,
        ScheduleCreate(
            name="each-second", cron="* * * * * *", params={"model": "slow", "uri": "in/tiny.csv"}
        ),
    )

    def fired() -> list[Job]:
        with ctx.uow() as session:
            jobs = list(session.scalars(select(Job).where(Job.input_key == "in/tiny.csv")))
        return jobs if len(jobs) >= 4 else []

    jobs = eventually(fired, 60, "four slots to fire")
    schedules.set_paused(ctx, "each-second", True)
    slots = [j.options["schedule"] for j in jobs]
    assert len(slots) == len(set(slots))
    runs = ctx.dispatcher.get().client.list_workflows(  # type: ignore[attr-defined]
        name=schedules.FIRE_WORKFLOW, load_input=False, load_output=False
    )
    ids = [r.workflow_id for r in runs]
    assert len(ids) == len(set(ids)) >= len(slots)
