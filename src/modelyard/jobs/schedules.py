"""Cron schedules of registered job types.

A schedule lives in DBOS's schedule table (one source of truth, shared by every worker): DBOS starts
the workflow ``jobs.fire_schedule`` once per slot, under an id made of the schedule's name and the
slot, so several workers never fire one slot twice. The workflow submits the schedule's job type with
its fixed parameters, under a job id derived from (schedule, slot), so a repeated step is harmless.

Job types are registered here by name; other parts may register theirs with ``register_job_type``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import select

from modelyard.db import utcnow
from modelyard.durable import dispatcher
from modelyard.errors import AlreadyExists, BadRequest, NotFound, ValidationFailed
from modelyard.jobs import service, submission
from modelyard.jobs.models import Job, JobState
from modelyard.jobs.schemas import (
    InputFormat,
    JobCreate,
    JobOptions,
    JobTypePublic,
    ScheduleCreate,
    SchedulePublic,
)
from modelyard.registry.schemas import NAME_PATTERN

if TYPE_CHECKING:
    from modelyard.context import AppContext

log = logging.getLogger("modelyard.jobs.schedules")
FIRE_WORKFLOW = "jobs.fire_schedule"


@dataclass(frozen=True, slots=True)
class JobType:
    """Something a schedule can start: its parameters' model and the function that starts it.

    ``run(ctx, params, key)`` must be idempotent for one ``key`` (the schedule and slot): a fire step
    that runs twice calls it twice. ``check(ctx, params)``, when given, refuses parameters a run would
    refuse (a model or input file that does not exist), so a schedule is refused when it is created.
    """

    name: str
    description: str
    params: type[BaseModel]
    run: Callable[[AppContext, Any, str], str | None]
    check: Callable[[AppContext, Any], None] | None = None


JOB_TYPES: dict[str, JobType] = {}


def register_job_type(job_type: JobType) -> JobType:
    """Make a job type available to schedules (at import time)."""
    JOB_TYPES[job_type.name] = job_type
    return job_type


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


def job_types() -> list[JobTypePublic]:
    """Every registered job type with the JSON schema of its parameters."""
    return [
        JobTypePublic(name=t.name, description=t.description, params_schema=t.params.model_json_schema())
        for t in JOB_TYPES.values()
    ]


def _params(job_type: str, params: dict[str, Any]) -> BaseModel:
    found = JOB_TYPES.get(job_type)
    if found is None:
        raise BadRequest(f"unknown job type {job_type!r}; registered: {sorted(JOB_TYPES)}", field="job_type")
    try:
        return found.params.model_validate(params)
    except ValidationError as exc:
        problems = [
            {"field": "params." + ".".join(str(p) for p in e["loc"]), "detail": e["msg"]}
            for e in exc.errors()
        ]
        raise ValidationFailed(
            f"{problems[0]['field']}: {problems[0]['detail']}", errors=problems, field="params"
        ) from exc


def _zone(timezone: str | None) -> ZoneInfo | None:
    if timezone is None:
        return None
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BadRequest(f"unknown time zone {timezone!r}", field="timezone") from exc


def public(found: dict[str, Any]) -> SchedulePublic:
    """The wire form of a DBOS schedule of ours."""
    context = found.get("context") or {}
    zone = _zone(found.get("cron_timezone"))
    now = datetime.now(zone) if zone else utcnow()
    paused = str(found.get("status", "")).upper() == "PAUSED"
    last = found.get("last_fired_at")
    return SchedulePublic(
        name=found["schedule_name"],
        cron=found["schedule"],
        job_type=context.get("job_type", ""),
        params=context.get("params", {}),
        timezone=found.get("cron_timezone"),
        paused=paused,
        last_fired_at=datetime.fromisoformat(last) if isinstance(last, str) else last,
        next_fire_at=None
        if paused
        else croniter(found["schedule"], now, second_at_beginning=True).get_next(datetime),
    )


def create(ctx: AppContext, data: ScheduleCreate) -> SchedulePublic:
    """Create a schedule after checking its cron expression, time zone, job type and parameters."""
    if not croniter.is_valid(data.cron, second_at_beginning=True):
        raise BadRequest(
            f"{data.cron!r} is not a cron expression (5 fields, or 6 with seconds first)", field="cron"
        )
    _zone(data.timezone)
    params = _params(data.job_type, data.params)
    check = JOB_TYPES[data.job_type].check
    if check is not None:
        check(ctx, params)
    work = dispatcher(ctx)
    if work.get_schedule(data.name) is not None:
        raise AlreadyExists(f"a schedule named {data.name!r} exists", field="name")
    context = {"schedule": data.name, "job_type": data.job_type, "params": params.model_dump(mode="json")}
    work.create_schedule(data.name, FIRE_WORKFLOW, data.cron, context, data.timezone)
    return get(ctx, data.name)


def get(ctx: AppContext, name: str) -> SchedulePublic:
    """One schedule, or ``NotFound``."""
    found = dispatcher(ctx).get_schedule(name)
    if found is None or found.get("workflow_name") != FIRE_WORKFLOW:
        raise NotFound(f"schedule {name!r} does not exist", field="name")
    return public(found)


def list_all(ctx: AppContext) -> list[SchedulePublic]:
    """Every schedule, by name."""
    return sorted((public(s) for s in dispatcher(ctx).list_schedules(FIRE_WORKFLOW)), key=lambda s: s.name)


def delete(ctx: AppContext, name: str) -> None:
    """Delete a schedule; jobs it already started are kept."""
    get(ctx, name)
    dispatcher(ctx).delete_schedule(name)


def set_paused(ctx: AppContext, name: str, paused: bool) -> SchedulePublic:
    """Pause or resume a schedule."""
    get(ctx, name)
    dispatcher(ctx).set_schedule_paused(name, paused)
    return get(ctx, name)


def fire(ctx: AppContext, context: dict[str, Any], slot: str) -> str | None:
    """Start the schedule's job for one slot (idempotent per slot); returns the job id, if any."""
    schedule = context.get("schedule", "")
    job_type = JOB_TYPES.get(context.get("job_type", ""))
    if job_type is None:
        log.error("schedule names an unknown job type", extra={"schedule": schedule, "context": context})
        return None
    params = job_type.params.model_validate(context.get("params", {}))
    return job_type.run(ctx, params, f"{schedule}@{slot}")
