"""Durable workflows of jobs (DBOS), each under an explicit, stable name.

``jobs.run_batch`` plans a job and enqueues one ``jobs.run_chunk`` per chunk on the shared queue
``jobs.chunks``, so every worker process takes chunks; a single-chunk job runs it in the same step. The
last chunk to stop settles the job, so no workflow sits waiting on others. A step that fails for a
reason worth retrying is retried with doubling waits (durable sleeps) up to the job's attempt limit,
then recorded as a dead letter. ``jobs.fire_schedule`` is what cron schedules start.

Bodies orchestrate; steps call ``runner``/``schedules``. Importing registers; nothing starts here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from dbos import DBOS, SetWorkflowID

from modelyard.context import AppContext
from modelyard.durable import current, declare_queue, on_tick
from modelyard.jobs import runner, schedules, service
from modelyard.jobs.service import CHUNK_QUEUE, CHUNK_WORKFLOW, JOB_QUEUE, JOB_WORKFLOW

log = logging.getLogger("modelyard.jobs")
Outcome = dict[str, Any]

declare_queue(JOB_QUEUE, worker_concurrency=lambda s: s.job_queue_concurrency)
declare_queue(CHUNK_QUEUE, worker_concurrency=None)


class WorkFailed(Exception):
    """Raised at the end of a workflow whose item failed, so DBOS (and the queue page) count it failed."""


def _guard(fn: Callable[[], Outcome]) -> Outcome:
    """Run a step body; an unexpected error becomes a ``retry`` outcome (steps never raise)."""
    try:
        return fn()
    except Exception as exc:
        return runner.transient(exc)


def _executor_id() -> str | None:
    durable = current().extras.get("durable")
    return getattr(durable, "executor_id", None)


def _start(job_id: str) -> Outcome:
    ctx = current()
    plan = runner.plan_job(ctx, job_id)
    if plan["status"] == "ok" and plan["chunks"] == 1:  # a small job: no second step, no child workflow
        ran = _guard(lambda: runner.run_chunk(ctx, job_id, 0, _executor_id()))
        return {**plan, **ran, "stage": "chunk"}
    return {**plan, "stage": "plan"}


@DBOS.step(name="jobs.start")
def start_step(job_id: str) -> Outcome:
    """Split the job into chunks (idempotent); run the chunk too if there is only one."""
    return _guard(lambda: _start(job_id))


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


@DBOS.workflow(name=CHUNK_WORKFLOW)
def run_chunk(job_id: str, index: int) -> str:
    """One chunk of a job, retried with backoff, dead-lettered after its last attempt."""
    return _chunk(job_id, index)


def _gave_up(job_id: str, outcome: Outcome) -> None:
    if outcome.get("stage") == "chunk":
        chunk_dead_step(job_id, 0, outcome["error"], outcome.get("traceback"))
    else:
        planning_dead_step(job_id, outcome["error"])


@DBOS.workflow(name=JOB_WORKFLOW)
def run_batch(job_id: str) -> str:
    """Plan a job and run its chunk in the same step if it has one, else enqueue every chunk on
    ``jobs.chunks``."""
    plan = _with_retries(lambda: start_step(job_id), lambda o: _gave_up(job_id, o))
    if plan["status"] in ("failed", "retry"):
        raise WorkFailed(f"job {job_id}: {plan.get('error')}")
    if plan["status"] != "ok" or plan.get("stage") == "chunk":
        return str(plan["status"])
    chunks, generation = int(plan["chunks"]), int(plan.get("generation", 0))
    for index in range(chunks):
        with SetWorkflowID(service.chunk_workflow_id(job_id, index, generation)):
            DBOS.enqueue_workflow(CHUNK_QUEUE, run_chunk, job_id, index)
    return f"enqueued {chunks} chunks"


@DBOS.step(name="jobs.fire")
def fire_step(slot: str, context: dict[str, Any]) -> str | None:
    """Submit the scheduled job of one slot (idempotent per slot)."""
    return schedules.fire(current(), context, slot)


@DBOS.workflow(name=schedules.FIRE_WORKFLOW)
def fire_schedule(scheduled_at: datetime, context: dict[str, Any]) -> str | None:
    """What a cron schedule starts, once per slot."""
    return fire_step(scheduled_at.isoformat(), context)


@on_tick
def requeue_orphans(ctx: AppContext) -> None:
    """Enqueue queued jobs whose workflow never made it into the queue."""
    found = service.requeue_orphans(ctx)
    if found:
        log.warning("re-enqueued jobs that were never queued", extra={"jobs": found})
