"""Small jobs in bulk: the jobs of a batch whose inline rows fit in one chunk are planned and started in
one transaction, run one after another, and recorded done in one more, instead of four transactions each.

The guarantees are the one-job way's (``runner``): planning is guarded (a job still queued, not planned),
each output is written under its chunk's key before its completion commits, and a completion is counted
once. A job this does not take (a file, several chunks, planned already: e.g. a repeat after a crash)
goes the one-job way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select, update

from modelyard.db import utcnow
from modelyard.durable import log
from modelyard.jobs import runner, sizing
from modelyard.jobs.models import ChunkState, Job, JobChunk, JobState
from modelyard.jobs.service import job_event, publish

if TYPE_CHECKING:
    from modelyard.context import AppContext

Outcome = runner.Outcome


def _small(ctx: AppContext, job: Job) -> bool:
    """A job still waiting whose inline rows fit one chunk, unless they may be worth several chunks of a
    model slow per row (its cost unknown here yet, or known to be high): planning decides those."""
    if not (
        job.state == JobState.QUEUED
        and job.chunk_count == 0
        and job.input_kind == "inline"
        and job.total_rows is not None
        and 0 < job.total_rows <= int(job.options.get("chunk_rows", 0))
    ):
        return False
    if not job.options.get("chunk_auto") or job.total_rows < 2 * sizing.MIN_ROWS:
        return True
    cost = sizing.known_cost(ctx, (job.model, job.version))
    return cost is not None and not sizing.costly(ctx, cost, job.total_rows)


def _start(ctx: AppContext, job_ids: list[str], executor_id: str | None) -> list[tuple[Job, JobChunk]]:
    """Plan and start every small job of ``job_ids`` that is still waiting, in one transaction."""
    now = utcnow()
    started = []
    with runner._txn(ctx) as session:
        found = {job.id: job for job in session.scalars(select(Job).where(Job.id.in_(job_ids)))}
        for job in (found[i] for i in job_ids if i in found):  # in the batch's order (oldest first)
            if not _small(ctx, job):
                continue
            won = runner._write(
                session,
                update(Job)
                .where(Job.id == job.id, Job.state == JobState.QUEUED, Job.chunk_count == 0)
                .values(state=JobState.RUNNING, started_at=now, updated_at=now, chunk_count=1),
            )
            if runner._rowcount(won):
                assert job.total_rows is not None
                chunk = JobChunk(
                    job_id=job.id,
                    index=0,
                    row_start=0,
                    row_end=job.total_rows,
                    state=ChunkState.RUNNING,
                    attempts=1,
                    started_at=now,
                    queued_at=now,
                    executor_id=executor_id,
                    batch_id=job.batch_id,  # run here; if it must wait for a retry, nobody else takes it
                    claimed_at=now,
                )
                session.add(chunk)
                started.append((job, chunk))
        session.flush()
        session.expunge_all()
        for job, _ in started:  # the rows now say so; these copies are what the events carry
            job.state, job.chunk_count, job.started_at = JobState.RUNNING, 1, now
        log.append_many(session, [job_event("jobs.started", job) for job, _ in started])
    for job, _ in started:
        publish(ctx, "jobs.started", job)
    return started


def run_small(
    ctx: AppContext, job_ids: list[str], executor_id: str | None
) -> tuple[dict[str, Outcome], list[str]]:
    """Run the small jobs of ``job_ids``; their outcomes, and the ids left for the one-job way."""
    started = _start(ctx, job_ids, executor_id)
    outcomes: dict[str, Outcome] = {}
    done: list[tuple[Job, runner.Done]] = []
    for job, chunk in started:
        result = runner.work_chunk(ctx, job, chunk)
        if isinstance(result, dict):
            outcomes[job.id] = {**result, "chunks": 1, "stage": "chunk", **runner._policy(job)}
        else:
            done.append((job, result))
    if done:
        with runner._txn(ctx) as session:
            recorded = [
                (job, result, runner.record_done(ctx, session, job.id, 0, *result)) for job, result in done
            ]
            events = [e for j, _, (end, snap) in recorded for e in runner.done_event(ctx, j.id, end, snap)]
            log.append_many(session, events)
        for job, (rows, _, key, _), (finished, snapshot) in recorded:
            runner.announce_done(ctx, job.id, finished, snapshot, key)
            outcomes[job.id] = {"status": "done", "rows": rows, "chunks": 1, "stage": "chunk"}
    ran = {job.id for job, _ in started}
    return outcomes, [job_id for job_id in job_ids if job_id not in ran]
