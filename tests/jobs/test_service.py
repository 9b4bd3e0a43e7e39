"""Submitting and controlling jobs, with a fake dispatcher, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from modelyard.context import AppContext
from modelyard.db import utcnow
from modelyard.errors import Conflict
from modelyard.jobs import runner, service, submission
from modelyard.jobs.models import ChunkState, Job, JobChunk
from modelyard.jobs.schemas import JobCreate, JobOptions
from tests.jobs.conftest import fake, features, jobs_in_db, stored, write_csv


def test_cancel_retry_and_delete(ctx: AppContext, tmp_path: Path) -> None:
    job = submission.submit_file(
        ctx,
        model="churn",
        version="latest",
        path=write_csv(tmp_path / "x.csv", features(250)),
        filename="x.csv",
        declared_format=None,
        options=JobOptions(),
    )
    runner.plan_job(ctx, job.id)
    runner.run_chunk(ctx, job.id, 0)
    with pytest.raises(Conflict, match="wait for it to finish"):
        service.retry(ctx, job.id)
    assert service.cancel(ctx, job.id).state == "cancelled"
    assert service.cancel(ctx, job.id).state == "cancelled"  # cancelling twice is harmless
    assert fake(ctx).cancelled == [f"job-{job.id}"]
    retried = service.retry(ctx, job.id)
    assert (retried.state, retried.generation) == ("running", 1)
    assert fake(ctx).ids()[-2:] == [f"job-{job.id}-c000001-g1", f"job-{job.id}-c000002-g1"]
    for index in (1, 2):
        runner.run_chunk(ctx, job.id, index)
    with ctx.uow() as session:
        assert session.get_one(Job, job.id).state == "succeeded"
    with pytest.raises(Conflict, match="already succeeded"):
        service.cancel(ctx, job.id)
    with pytest.raises(Conflict, match="nothing to retry"):
        service.retry(ctx, job.id)
    service.delete(ctx, job.id)
    assert stored(ctx) == [] and jobs_in_db(ctx) == 0
    assert fake(ctx).forgotten == [f"job-{job.id}"]


def test_dead_letter_retry_reruns_only_that_chunk(ctx: AppContext, tmp_path: Path) -> None:
    job = submission.submit(ctx, JobCreate(model="churn", rows=features(250).tolist()))
    runner.plan_job(ctx, job.id)
    runner.run_chunk(ctx, job.id, 0)
    runner.run_chunk(ctx, job.id, 2)
    with ctx.uow() as session:
        session.execute(update(JobChunk).values(state=ChunkState.RUNNING).where(JobChunk.index == 1))
    runner.chunk_dead(ctx, job.id, 1, "boom", "Traceback ...")
    with pytest.raises(Conflict, match="not failed, dead or cancelled"):
        service.retry(ctx, job.id, [0])
    service.retry(ctx, job.id, [1])
    assert fake(ctx).ids()[-1] == f"job-{job.id}-c000001-g1"
    runner.run_chunk(ctx, job.id, 1)
    with ctx.uow() as session:
        done = session.get_one(Job, job.id)
        assert service.list_dead_letters(session=session)[1] == 0
    assert (done.state, done.rows_done, done.chunks_failed, done.error) == ("succeeded", 250, 0, None)


def test_list_filters_and_pages(ctx: AppContext) -> None:
    ids = [submission.submit(ctx, JobCreate(model="churn", rows=[[0.0] * 20])).id for _ in range(3)]
    service.cancel(ctx, ids[0])
    with ctx.uow() as session:
        page, total = service.list_jobs(session=session, limit=2)
        assert total == 3 and len(page) == 2
        assert [j.id for j in service.list_jobs(session=session, state=["cancelled"])[0]] == [ids[0]]
        assert service.list_jobs(session=session, model="other")[1] == 0
        later = utcnow() + timedelta(minutes=1)
        assert service.list_jobs(session=session, created_after=later)[1] == 0
        assert service.list_jobs(session=session, created_before=later)[1] == 3


def test_progress_reports_rate_and_eta(ctx: AppContext) -> None:
    job = submission.submit(ctx, JobCreate(model="churn", rows=features(250).tolist()))
    runner.plan_job(ctx, job.id)
    runner.run_chunk(ctx, job.id, 0)
    with ctx.uow() as session:
        public = service.job_public(session.get_one(Job, job.id))
    p = public.progress
    assert (p.total_rows, p.rows_done, p.chunks_done, p.chunk_count) == (250, 100, 1, 3)
    assert p.fraction == pytest.approx(0.4)
    assert p.rows_per_second is not None and p.rows_per_second > 0
    assert p.eta_seconds is not None and p.eta_seconds > 0
    assert public.links["events"] == f"/api/v1/jobs/{job.id}/events"


def test_orphaned_queued_jobs_are_enqueued_again(ctx: AppContext) -> None:
    job = submission.submit(ctx, JobCreate(model="churn", rows=[[0.0] * 20]))
    fake(ctx).enqueued.clear()  # as if the process died between the commit and the enqueue
    assert service.requeue_orphans(ctx) == 0  # too young: its enqueue may still be on its way
    with ctx.uow() as session:
        session.execute(update(Job).values(updated_at=utcnow() - timedelta(minutes=1)))
    assert service.requeue_orphans(ctx) == 1
    assert service.requeue_orphans(ctx) == 0
    assert fake(ctx).ids() == [f"job-{job.id}"]
