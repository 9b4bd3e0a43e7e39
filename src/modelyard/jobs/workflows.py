"""Durable workflows of jobs (DBOS), each under an explicit, stable name.

``jobs.run_jobs`` takes one batch of queued jobs claimed by a worker's claim loop (the ``jobs`` queue
of ``jobs.dispatch``; the batch id is the workflow id): one step plans every job of the batch and runs a
small job's single chunk on the spot; a bigger job's chunks wait as rows of the ``jobs.chunks`` queue
that every worker claims, each run by one ``jobs.run_chunk`` (its claim id is the workflow id). The last
chunk to stop settles the job, so no workflow sits waiting on others. A step that fails for a reason
worth retrying is retried with doubling waits (durable sleeps) up to the job's attempt limit, then
recorded as a dead letter.

Bodies orchestrate; steps call ``runner``. Importing registers; nothing starts here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from dbos import DBOS

from modelyard.durable import current, runs
from modelyard.jobs import dispatch, runner, small
from modelyard.jobs.service import CHUNK_WORKFLOW, JOB_WORKFLOW

log = logging.getLogger("modelyard.jobs")
Outcome = dict[str, Any]


class WorkFailed(Exception):
    """Raised at the end of a workflow whose item failed, so DBOS (and the queue page) count it failed."""

    already_logged = True  # the failure was logged and recorded; the console does not repeat it


def _guard(fn: Callable[[], Outcome]) -> Outcome:
    """Run a step body; an unexpected error becomes a ``retry`` outcome (steps never raise)."""
    try:
        return fn()
    except Exception as exc:
        return runner.transient(exc)


def _executor_id() -> str | None:
    durable = current().durable
    return durable.executor_id if durable is not None else None


def _start(job_id: str) -> Outcome:
    ctx = current()
    # this worker's room for chunks: the planning transaction claims that many of the job's chunks,
    # which this worker's chunk dispatcher then starts at once; the rest wait as rows for any worker
    chunks = ctx.claim_loops.get(dispatch.CHUNK_QUEUE)
    reserved = chunks.reserve(ctx.settings.worker_concurrency) if chunks is not None else 0
    plan: Outcome = {}
    try:
        plan = runner.plan_job(ctx, job_id, claim_first=reserved)
    finally:
        if chunks is not None:
            claims = [(claim_id, (job_id, index)) for claim_id, index in plan.get("claims", [])]
            chunks.hand_over(claims, reserved)
    if plan["status"] == "ok" and plan["chunks"] == 1:  # a small job: no second step, no child workflow
        ran = _guard(lambda: runner.run_chunk(ctx, job_id, 0, _executor_id()))
        return {**plan, **ran, "stage": "chunk"}
    return {**plan, "stage": "plan"}


@DBOS.step(name="jobs.start")
def start_step(job_ids: list[str]) -> dict[str, Outcome]:
    """Split each job into chunks (idempotent); run the chunk too where there is only one."""
    try:
        outcomes, rest = small.run_small(current(), job_ids, _executor_id())
    except Exception as exc:  # nothing of it committed, or it committed and the one-job way sees that
        outcomes, rest = {}, job_ids
        log.warning("small jobs in bulk failed; running them one by one", extra={"error": repr(exc)})
    return outcomes | {job_id: _guard(partial(_start, job_id)) for job_id in rest}


@DBOS.step(name="jobs.chunk")
def chunk_step(job_id: str, index: int) -> Outcome:
    """Run one chunk: read, predict, write its output once, record it done."""
    return _guard(lambda: runner.run_chunk(current(), job_id, index, _executor_id()))


@DBOS.step(name="jobs.chunk_dead")
def chunk_dead_step(job_id: str, index: int, error: str, trace: str | None) -> None:
    """Record a chunk that failed its last attempt as a dead letter."""
    runner.chunk_dead(current(), job_id, index, error, trace)


@DBOS.step(name="jobs.planning_dead")
def planning_dead_step(job_id: str, error: str) -> None:
    """Fail a job whose planning failed its last attempt."""
    runner.planning_dead(current(), job_id, error)


def _with_retries(step: Callable[[], Outcome], give_up: Callable[[Outcome], None]) -> Outcome:
    """Call ``step`` until it does not ask for a retry, waiting 1x, 2x, 4x... ``retry_seconds`` between
    attempts; after the last attempt ``give_up`` records the failure."""
    attempt = 0
    while True:
        attempt += 1
        outcome = step()
        if outcome["status"] != "retry":
            return outcome
        if attempt >= int(outcome.get("max_attempts", 3)):
            give_up(outcome)
            return outcome
        DBOS.sleep(float(outcome.get("retry_seconds", 1.0)) * 2 ** (attempt - 1))


def _chunk(job_id: str, index: int) -> str:
    outcome = _with_retries(
        lambda: chunk_step(job_id, index),
        lambda o: chunk_dead_step(job_id, index, o["error"], o.get("traceback")),
    )
    if outcome["status"] in ("failed", "retry"):
        raise WorkFailed(f"chunk {index} of job {job_id}: {outcome.get('error')}")
    return str(outcome["status"])


@runs(dispatch.CHUNKS)
@DBOS.workflow(name=CHUNK_WORKFLOW)
def run_chunk(job_id: str, index: int) -> str:
    """One chunk of a job, retried with backoff, dead-lettered after its last attempt."""
    return _chunk(job_id, index)


def _gave_up(job_id: str, outcome: Outcome) -> None:
    if outcome.get("stage") == "chunk":
        chunk_dead_step(job_id, 0, outcome["error"], outcome.get("traceback"))
    else:
        planning_dead_step(job_id, outcome["error"])


@runs(dispatch.JOBS)
@DBOS.workflow(name=JOB_WORKFLOW)
def run_jobs(batch_id: str, job_ids: list[str]) -> dict[str, str]:
    """Plan a batch of jobs (the ids claimed into it, kept with the workflow's inputs): run each small
    job's chunk at once, fan bigger ones out as chunks; jobs whose planning asks for a retry are tried
    again (together) after a doubling wait."""
    pending, attempt, ended = list(job_ids), 0, {}
    while pending:
        attempt += 1
        retry: list[str] = []
        wait = None
        for job_id, plan in start_step(pending).items():
            if plan["status"] == "retry" and attempt < int(plan.get("max_attempts", 3)):
                retry.append(job_id)
                seconds = float(plan.get("retry_seconds", 1.0)) * 2 ** (attempt - 1)
                wait = seconds if wait is None else min(wait, seconds)
                continue
            if plan["status"] == "retry":
                _gave_up(job_id, plan)
            ended[job_id] = str(plan["status"])
        if wait is not None:
            DBOS.sleep(wait)
        pending = retry
    return ended
