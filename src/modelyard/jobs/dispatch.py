"""The two claimed queues of jobs (``durable.ClaimedQueue`` declarations; see ``durable.queue``).

``jobs``: a job waits as a row (``state = 'queued'``, no ``batch_id``); submitting writes that row and
nothing else, so an API replica needs no worker and no enqueue can be lost between two databases. Jobs
are claimed oldest first, ``job_claim_batch`` to a batch, at most ``job_queue_concurrency`` batches in
flight per worker; one durable workflow per batch plans its jobs (and runs a small job's only chunk).

``jobs.chunks``: the chunks of bigger jobs wait as rows too, and every worker claims them one per claim
up to its own ``worker_concurrency`` (``modelyard worker --concurrency``), each run by one durable
workflow. A lone chunk is claimed by its job's batch when it is planned, so nobody else takes it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select

from modelyard.context import AppContext
from modelyard.durable import Claimed, ClaimedQueue, Monitor, wake
from modelyard.jobs.models import ChunkState, Job, JobChunk, JobState

# the two claim loops of a worker: queued jobs, and waiting chunks of bigger jobs
JOB_QUEUE, CHUNK_QUEUE = "jobs", "jobs.chunks"


def _unclaimed_job() -> tuple[Any, ...]:
    return (Job.state == JobState.QUEUED, Job.batch_id.is_(None))


def _unclaimed_chunk() -> tuple[Any, ...]:
    return (JobChunk.state == ChunkState.QUEUED, JobChunk.batch_id.is_(None))


def _of_running_jobs(query: Select[Any]) -> Select[Any]:
    return query.join(Job, Job.id == JobChunk.job_id).where(Job.state == JobState.RUNNING)


def _cleared() -> dict[str, Any]:
    return {"claimed_at": None}


JOBS = ClaimedQueue(
    name=JOB_QUEUE,
    model=Job,
    key=(Job.id,),
    claim_id=Job.batch_id,
    claimed_at=Job.claimed_at,
    waiting=_unclaimed_job,
    claimed=lambda: (Job.state == JobState.QUEUED,),
    order_by=(Job.created_at, Job.id),
    args=lambda c: ([k[0] for k in c.keys],),
    batch_size=lambda s: s.job_claim_batch,
    slots=lambda s: s.job_queue_concurrency,
    poll_seconds=lambda s: s.job_poll_seconds,
    claim_timeout=lambda s: s.job_claim_timeout_seconds,
    on_release=_cleared,
    monitor=Monitor(
        state=Job.state,
        waiting_since=Job.created_at,
        finished_at=Job.finished_at,
        waiting=JobState.QUEUED,
        running=JobState.RUNNING,
        succeeded=(JobState.SUCCEEDED,),
        failed=(JobState.FAILED,),
    ),
)


def _chunk_args(claimed: Claimed) -> tuple[Any, ...]:
    job_id, index = claimed.keys[0]
    return (str(job_id), int(index))


CHUNKS = ClaimedQueue(
    name=CHUNK_QUEUE,
    model=JobChunk,
    key=(JobChunk.job_id, JobChunk.index),
    claim_id=JobChunk.batch_id,
    claimed_at=JobChunk.claimed_at,
    waiting=_unclaimed_chunk,
    claimed=lambda: (JobChunk.state == ChunkState.QUEUED,),
    order_by=(JobChunk.queued_at, JobChunk.job_id, JobChunk.index),
    args=_chunk_args,
    pass_claim_id=False,
    slots=lambda s: s.worker_concurrency,
    poll_seconds=lambda s: s.job_poll_seconds,
    claim_timeout=lambda s: s.job_claim_timeout_seconds,
    on_release=_cleared,
    eligible=_of_running_jobs,
    parallel_starts=True,
    monitor=Monitor(
        state=JobChunk.state,
        waiting_since=JobChunk.queued_at,
        finished_at=JobChunk.finished_at,
        waiting=ChunkState.QUEUED,
        running=ChunkState.RUNNING,
        succeeded=(ChunkState.DONE,),
        failed=(ChunkState.FAILED, ChunkState.DEAD),
        dead=(ChunkState.DEAD,),
    ),
)


def wake_local(ctx: AppContext) -> None:
    """Nudge this process's job loop (if it runs one) so a job just queued here starts at once."""
    wake(ctx, JOB_QUEUE)


def wake_chunks(ctx: AppContext) -> None:
    """Nudge this process's chunk loop (if it runs one): chunks were just queued here."""
    wake(ctx, CHUNK_QUEUE)
