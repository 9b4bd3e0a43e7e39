"""Submitting and controlling jobs, with a fake dispatcher, on SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import Future
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from modelyard.context import AppContext
from modelyard.db import utcnow
from modelyard.durable import ClaimLoop, WorkState
from modelyard.errors import Conflict
from modelyard.jobs import dispatch, runner, service, submission
from modelyard.jobs.models import ChunkState, Job, JobChunk
from modelyard.jobs.schemas import JobCreate, JobOptions
from tests.jobs.conftest import claim_chunks, claim_jobs, fake, features, jobs_in_db, stored, write_csv


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
    assert fake(ctx).enqueued == []  # a planned job's chunks run off its row: nothing to cancel in DBOS
    retried = service.retry(ctx, job.id)
    assert (retried.state, retried.generation) == ("running", 1)
    claimed = claim_chunks(ctx, 10)  # its chunks wait again, for any worker
    assert [(j, i) for _, j, i in claimed] == [(job.id, 1), (job.id, 2)]
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
    assert [(j, i) for _, j, i in claim_chunks(ctx, 10)] == [(job.id, 1)]
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


def queued_claims(ctx: AppContext) -> dict[str, str | None]:
    with ctx.uow() as session:
        return dict(session.execute(select(Job.id, Job.batch_id).where(Job.state == "queued")).all())


def test_queued_jobs_are_claimed_in_batches_oldest_first_and_once(ctx: AppContext) -> None:
    ids = [submission.submit(ctx, JobCreate(model="churn", rows=[[0.0] * 20])).id for _ in range(5)]
    assert fake(ctx).enqueued == []  # submitting writes the row and nothing else
    first = claim_jobs(ctx, 3)
    second = claim_jobs(ctx, 3)
    assert first is not None and second is not None
    assert first[1] == ids[:3] and second[1] == ids[3:]  # oldest first, no job in two batches
    assert claim_jobs(ctx, 3) is None
    # a retried job that never got planned waits to be claimed again
    service.cancel(ctx, ids[0])
    service.retry(ctx, ids[0])
    again = claim_jobs(ctx, 3)
    assert again is not None and again[1] == [ids[0]]


def test_claims_whose_workflow_never_started_are_queued_again(ctx: AppContext) -> None:
    ids = [submission.submit(ctx, JobCreate(model="churn", rows=[[0.0] * 20])).id for _ in range(4)]
    lost, started = claim_jobs(ctx, 2), claim_jobs(ctx, 2)
    assert lost is not None and started is not None
    statuses = {started[0]: WorkState.RUNNING}  # the second batch's workflow runs; the first never started
    assert dispatch.JOBS.sweep(ctx, statuses.get) == 0  # too young: its workflow may be starting right now
    with ctx.uow() as session:
        session.execute(update(Job).values(claimed_at=utcnow() - timedelta(minutes=5)))
    assert dispatch.JOBS.sweep(ctx, lambda batches: {b: statuses[b] for b in batches if b in statuses}) == 2
    claims = queued_claims(ctx)
    assert [claims[i] for i in ids] == [None, None, started[0], started[0]]
    retaken = claim_jobs(ctx, 10)
    assert retaken is not None and retaken[1] == ids[:2]


def test_a_batch_that_cannot_start_gives_its_jobs_back(ctx: AppContext) -> None:
    ids = [submission.submit(ctx, JobCreate(model="churn", rows=[[0.0] * 20])).id for _ in range(3)]

    def refuse(batch_id: str) -> None:
        raise ConnectionError("system database unreachable")

    loop = ClaimLoop(ctx, dispatch.JOBS, refuse)
    assert loop.dispatch_once() == 1  # claimed one batch, failed to start it
    assert loop.started == 0 and loop.inflight == 0
    assert queued_claims(ctx) == {i: None for i in ids}


def test_waiting_chunks_are_claimed_once_and_freed_if_their_workflow_never_started(ctx: AppContext) -> None:
    job = submission.submit(ctx, JobCreate(model="churn", rows=features(250).tolist()))
    assert claim_chunks(ctx, 10) == []  # not planned yet: no chunks
    runner.plan_job(ctx, job.id)
    first = claim_chunks(ctx, 2)
    rest = claim_chunks(ctx, 2)
    assert [i for _, _, i in first] == [0, 1] and [i for _, _, i in rest] == [2]
    assert claim_chunks(ctx, 2) == [] and not dispatch.CHUNKS.any_waiting(ctx)
    assert len({c for c, _, _ in first + rest}) == 3  # one claim (one workflow id) per chunk
    runner.run_chunk(ctx, job.id, 0)  # the first claim's workflow ran; the second's never started
    with ctx.uow() as session:
        session.execute(update(JobChunk).values(claimed_at=utcnow() - timedelta(minutes=5)))
    started = {first[0][0]: WorkState.SUCCEEDED, rest[0][0]: WorkState.RUNNING}
    assert dispatch.CHUNKS.sweep(ctx, lambda ids: {i: started[i] for i in ids if i in started}) == 1
    assert [(j, i) for _, j, i in claim_chunks(ctx, 10)] == [(job.id, 1)]


def test_a_lone_chunk_belongs_to_the_batch_that_planned_it(ctx: AppContext) -> None:
    job = submission.submit(ctx, JobCreate(model="churn", rows=features(5).tolist()))
    batch = claim_jobs(ctx, 10)
    assert batch is not None
    assert runner.plan_job(ctx, job.id)["chunks"] == 1
    assert claim_chunks(ctx, 10) == []  # the planning workflow runs it; nobody else may
    with ctx.uow() as session:
        assert session.get_one(JobChunk, (job.id, 0)).batch_id == batch[0]


def test_a_worker_runs_at_most_its_own_concurrency_of_chunks(ctx: AppContext) -> None:
    job = submission.submit(ctx, JobCreate(model="churn", rows=features(500).tolist()))  # 5 chunks
    runner.plan_job(ctx, job.id)
    running: list[Future[None]] = []

    def start(claim_id: str, job_id: str, index: int) -> Future[None]:
        running.append(Future())
        return running[-1]

    ctx.settings.worker_concurrency = 2
    loop = ClaimLoop(ctx, dispatch.CHUNKS, start)
    assert loop.dispatch_once() == 2
    assert loop.dispatch_once() == 0  # full: the other chunks wait for this worker or another
    running[0].set_result(None)
    assert loop.inflight == 1 and loop.dispatch_once() == 1
    other = ClaimLoop(ctx, dispatch.CHUNKS, start)  # a second worker takes what is left
    assert other.dispatch_once() == 2 and not dispatch.CHUNKS.any_waiting(ctx)


def test_planning_claims_the_chunks_its_worker_has_room_for_and_hands_them_over(ctx: AppContext) -> None:
    job = submission.submit(ctx, JobCreate(model="churn", rows=features(500).tolist()))  # 5 chunks
    started: list[tuple[str, str, int]] = []
    running: list[Future[None]] = []

    def start(claim_id: str, job_id: str, index: int) -> Future[None]:
        started.append((claim_id, job_id, index))
        running.append(Future())
        return running[-1]

    ctx.settings.worker_concurrency = 2
    loop = ClaimLoop(ctx, dispatch.CHUNKS, start)
    reserved = loop.reserve(5)
    assert reserved == 2 and loop.reserve(1) == 0  # held: nobody else can take these slots meanwhile
    plan = runner.plan_job(ctx, job.id, claim_first=reserved)
    assert [index for _, index in plan["claims"]] == [0, 1]
    loop.hand_over([(claim_id, (job.id, index)) for claim_id, index in plan["claims"]], reserved)
    assert loop.dispatch_once() == 2  # started at once, nothing else claimed: the worker is full
    assert [[c, i] for c, _, i in started] == plan["claims"]
    with ctx.uow() as session:
        claimed = session.scalars(
            select(JobChunk.index).where(JobChunk.job_id == job.id, JobChunk.batch_id.is_not(None))
        ).all()
    assert sorted(claimed) == [0, 1]  # the other three wait as rows for any worker
    running[0].set_result(None)  # one of them finished: the next waiting chunk is claimed as usual
    assert loop.dispatch_once() == 1 and started[-1][2] == 2


def test_a_reservation_not_used_is_given_back(ctx: AppContext) -> None:
    job = submission.submit(ctx, JobCreate(model="churn", rows=features(5).tolist()))  # 1 chunk
    ctx.settings.worker_concurrency = 2
    loop = ClaimLoop(ctx, dispatch.CHUNKS, lambda *args: Future())
    assert claim_jobs(ctx, 10) is not None
    reserved = loop.reserve(2)
    plan = runner.plan_job(ctx, job.id, claim_first=reserved)
    assert plan["claims"] == []  # a lone chunk is its batch's, never handed over
    loop.hand_over([], reserved)
    assert loop.reserve(2) == 2
