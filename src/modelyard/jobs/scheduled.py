"""The job types of jobs that cron schedules can start: a batch prediction, and a purge of old jobs."""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field
from sqlalchemy import select

from modelyard.db import utcnow
from modelyard.jobs import service, submission
from modelyard.jobs.models import Job, JobState
from modelyard.jobs.schemas import InputFormat, JobCreate, JobOptions
from modelyard.registry.schemas import NAME_PATTERN
from modelyard.schedules.service import JobType, register_job_type

if TYPE_CHECKING:
    from modelyard.context import AppContext

log = logging.getLogger("modelyard.jobs.schedules")


class BatchPredictParams(BaseModel):
    """A batch prediction over a file in the artifact store."""

    model: str = Field(pattern=NAME_PATTERN, examples=["churn"])
    version: int | str = Field("latest", examples=["latest"])
    uri: str = Field(examples=["batches/customers.parquet"])
    format: InputFormat | None = None
    options: JobOptions = Field(default_factory=lambda: JobOptions())


def _batch_job(params: BatchPredictParams) -> JobCreate:
    return JobCreate.model_validate(params.model_dump() | {"rows": None})


def _check_batch(ctx: AppContext, params: BatchPredictParams) -> None:
    submission.check(ctx, _batch_job(params))


def _run_batch(ctx: AppContext, params: BatchPredictParams, key: str) -> str:
    data = _batch_job(params)
    job_id = hashlib.sha256(key.encode()).hexdigest()[:32]
    return submission.submit(ctx, data, job_id=job_id, source={"schedule": key}).id


class PurgeParams(BaseModel):
    """Delete finished jobs (and their outputs) older than some days."""

    older_than_days: float = Field(30.0, gt=0)


def _run_purge(ctx: AppContext, params: PurgeParams, key: str) -> None:
    cutoff = utcnow() - timedelta(days=params.older_than_days)
    final = [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED]
    with ctx.uow() as session:
        old = list(session.scalars(select(Job.id).where(Job.state.in_(final), Job.finished_at < cutoff)))
    for job_id in old:
        service.delete(ctx, job_id)
    log.info("purged old jobs", extra={"jobs": len(old), "schedule_slot": key})


register_job_type(
    JobType(
        "batch_predict",
        "A batch prediction over a file in the artifact store.",
        BatchPredictParams,
        _run_batch,
        _check_batch,
    )
)
register_job_type(
    JobType("purge_jobs", "Delete finished jobs older than some days.", PurgeParams, _run_purge)
)
