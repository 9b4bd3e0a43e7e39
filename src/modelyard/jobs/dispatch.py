"""Queued jobs and chunks are claimed by every worker's dispatchers (see ``claims``).

``jobs``: a job waits as a row (``state = 'queued'``, no ``batch_id``); submitting writes that row and
nothing else, so an API replica needs no worker and no enqueue can be lost between two databases. Jobs
are claimed oldest first, ``job_claim_batch`` to a batch, at most ``job_queue_concurrency`` batches in
flight per worker; one durable workflow per batch plans its jobs (and runs a small job's only chunk).

``jobs.chunks``: the chunks of bigger jobs wait as rows too, and every worker claims them one at a time up
to its own ``worker_concurrency`` (``modelyard worker --concurrency``), each run by one durable workflow.
A lone chunk is claimed by its job's batch when it is planned, so nobody else takes it.
"""

from __future__ import annotations

import logging
from functools import partial

from sqlalchemy import ColumnElement, select, update

from modelyard.claims import Claim, ClaimLoop, Starter, StatusLookup, sweep_stale
from modelyard.context import AppContext
from modelyard.db import new_id, utcnow
from modelyard.jobs.models import ChunkState, Job, JobChunk, JobState

log = logging.getLogger("modelyard.jobs")
LOCAL, LOCAL_CHUNKS = "jobs.dispatcher", "jobs.chunk_dispatcher"


def claim(ctx: AppContext, size: int) -> tuple[str, list[str]] | None:
    """Claim up to ``size`` waiting jobs, oldest first, as a new batch; (batch id, job ids) or None."""
    batch_id, now = new_id(), utcnow()
    ids = (
        select(Job.id)
        .where(Job.state == JobState.QUEUED, Job.batch_id.is_(None))
        .order_by(Job.created_at, Job.id)
        .limit(size)
        .with_for_update(skip_locked=True)
        # materialised, so PostgreSQL runs the locking LIMIT query once
        .cte("claim")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    with ctx.uow() as session:
        session.execute(
            update(Job)
            .where(Job.id.in_(select(ids.c.id)), Job.state == JobState.QUEUED, Job.batch_id.is_(None))
            .values(batch_id=batch_id, claimed_at=now)
            .execution_options(synchronize_session=False)
        )
        jobs = list(session.scalars(select(Job.id).where(Job.batch_id == batch_id).order_by(Job.created_at)))
    return (batch_id, jobs) if jobs else None


def waiting(ctx: AppContext) -> bool:
    """Whether any job waits to be claimed."""
    with ctx.uow() as session:
        found = session.scalar(
            select(Job.id).where(Job.state == JobState.QUEUED, Job.batch_id.is_(None)).limit(1)
        )
    return found is not None


def _release(ctx: AppContext, model: type[Job] | type[JobChunk], waiting: str, claim_ids: list[str]) -> int:
    """Clear these claims from the rows of ``model`` still in state ``waiting``; how many rows."""
    if not claim_ids:
        return 0
    with ctx.uow() as session:
        return int(
            session.execute(  # type: ignore[attr-defined]
                update(model)
                .where(model.batch_id.in_(claim_ids), model.state == waiting)
                .values(batch_id=None, claimed_at=None)
                .execution_options(synchronize_session=False)
            ).rowcount
        )


def unclaim(ctx: AppContext, batch_ids: list[str]) -> int:
    """Make the still-queued jobs of these batches wait again."""
    return _release(ctx, Job, JobState.QUEUED, batch_ids)


def sweep(ctx: AppContext, status: StatusLookup) -> int:
    """Queue again the jobs of batches claimed long ago whose workflow never started or has ended."""
    waiting, timeout = Job.state == JobState.QUEUED, ctx.settings.job_claim_timeout_seconds
    return sweep_stale(
        ctx, Job.batch_id, Job.claimed_at, waiting, timeout, status, partial(unclaim, ctx), "jobs"
    )


class JobDispatcher(ClaimLoop):
    """Claims batches of queued jobs for this worker."""

    what = "jobs"

    def __init__(self, ctx: AppContext, starter: Starter):
        super().__init__(
            starter, slots=ctx.settings.job_queue_concurrency, poll_seconds=ctx.settings.job_poll_seconds
        )
        self.ctx = ctx

    def claim(self, free: int) -> list[Claim]:
        """See ``ClaimLoop.claim``."""
        if not waiting(self.ctx):  # a read, so an idle worker's polls never take SQLite's write lock
            return []
        batches: list[Claim] = []
        for _ in range(free):
            found = claim(self.ctx, self.ctx.settings.job_claim_batch)
            if found is None:
                break
            batches.append((found[0], (found[1],)))
        return batches

    def unclaim(self, batch_ids: list[str]) -> None:
        """See ``ClaimLoop.unclaim``."""
        unclaim(self.ctx, batch_ids)


def wake_local(ctx: AppContext) -> None:
    """Nudge this process's dispatcher (if it runs one) so a job just queued here starts at once."""
    found = ctx.extras.get(LOCAL)
    if isinstance(found, JobDispatcher):
        found.wake()


def local_chunks(ctx: AppContext) -> ChunkDispatcher | None:
    """This process's chunk dispatcher, if it runs one."""
    found = ctx.extras.get(LOCAL_CHUNKS)
    return found if isinstance(found, ChunkDispatcher) else None


def wake_chunks(ctx: AppContext) -> None:
    """Nudge this process's chunk dispatcher (if it runs one): chunks were just queued here."""
    found = local_chunks(ctx)
    if found is not None:
        found.wake()


# ---------------------------------------------------------------- chunks


def _open_chunks() -> tuple[ColumnElement[bool], ...]:
    return (JobChunk.state == ChunkState.QUEUED, JobChunk.batch_id.is_(None))


def chunks_waiting(ctx: AppContext) -> bool:
    """Whether any chunk waits to be claimed."""
    with ctx.uow() as session:
        found = session.scalar(select(JobChunk.job_id).where(*_open_chunks()).limit(1))
    return found is not None


def claim_chunks(ctx: AppContext, size: int) -> list[tuple[str, str, int]]:
    """Claim up to ``size`` waiting chunks of running jobs, oldest first: (claim id, job id, index) each.
    Each claim is a guarded UPDATE, so of two workers that saw the same chunk only one gets it."""
    with ctx.uow() as session:
        found = session.execute(
            select(JobChunk.job_id, JobChunk.index)
            .join(Job, Job.id == JobChunk.job_id)
            .where(*_open_chunks(), Job.state == JobState.RUNNING)
            .order_by(JobChunk.queued_at, JobChunk.job_id, JobChunk.index)
            .limit(size)
        ).all()
    if not found:
        return []
    claimed, now = [], utcnow()
    with ctx.uow() as session:
        for job_id, index in found:
            claim_id = new_id()
            won = session.execute(  # type: ignore[attr-defined]
                update(JobChunk)
                .where(JobChunk.job_id == job_id, JobChunk.index == index, *_open_chunks())
                .values(batch_id=claim_id, claimed_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
            if won:
                claimed.append((claim_id, str(job_id), int(index)))
    return claimed


def unclaim_chunks(ctx: AppContext, claim_ids: list[str]) -> int:
    """Make the still-waiting chunks of these claims waiting for anyone again."""
    return _release(ctx, JobChunk, ChunkState.QUEUED, claim_ids)


def sweep_chunks(ctx: AppContext, status: StatusLookup) -> int:
    """Free the waiting chunks of claims made long ago whose workflow never started or has ended."""
    waiting, timeout = JobChunk.state == ChunkState.QUEUED, ctx.settings.job_claim_timeout_seconds
    return sweep_stale(
        ctx,
        JobChunk.batch_id,
        JobChunk.claimed_at,
        waiting,
        timeout,
        status,
        partial(unclaim_chunks, ctx),
        "jobs.chunks",
    )


class ChunkDispatcher(ClaimLoop):
    """Claims waiting chunks for this worker, up to its own concurrency."""

    what = "jobs.chunks"

    def __init__(self, ctx: AppContext, starter: Starter):
        super().__init__(
            starter,
            slots=ctx.settings.worker_concurrency,
            poll_seconds=ctx.settings.job_poll_seconds,
            parallel_starts=True,
        )
        self.ctx = ctx

    def claim(self, free: int) -> list[Claim]:
        """See ``ClaimLoop.claim``."""
        if not chunks_waiting(self.ctx):
            return []
        return [(claim_id, (job_id, index)) for claim_id, job_id, index in claim_chunks(self.ctx, free)]

    def unclaim(self, batch_ids: list[str]) -> None:
        """See ``ClaimLoop.unclaim``."""
        unclaim_chunks(self.ctx, batch_ids)
