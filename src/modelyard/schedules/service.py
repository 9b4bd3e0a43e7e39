"""Cron schedules of registered job types.

A schedule lives in DBOS's schedule table (one source of truth, shared by every worker): DBOS starts
the workflow ``jobs.fire_schedule`` once per slot, under an id made of the schedule's name and the
slot, so several workers never fire one slot twice. The workflow submits the schedule's job type with
its fixed parameters, under a job id derived from (schedule, slot), so a repeated step is harmless.

Any part registers the job types a schedule may start with ``register_job_type``, in a module listed in
``JOB_TYPE_MODULES`` (imported on first use, so an API replica knows them as well as a worker).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ValidationError

from modelyard.db import utcnow
from modelyard.errors import AlreadyExists, BadRequest, NotFound, ValidationFailed
from modelyard.schedules.schemas import JobTypePublic, ScheduleCreate, SchedulePublic

if TYPE_CHECKING:
    from modelyard.context import AppContext

log = logging.getLogger("modelyard.schedules")
# the workflow DBOS starts once per slot (its stored name: schedules in the system database refer to it)
FIRE_WORKFLOW = "jobs.fire_schedule"
# Modules that register job types, imported before job types are read.
JOB_TYPE_MODULES: list[str] = ["modelyard.jobs.scheduled"]


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
_imported: list[bool] = []


def _types() -> dict[str, JobType]:
    """Every registered job type (their modules imported first)."""
    if not _imported:
        for name in JOB_TYPE_MODULES:
            importlib.import_module(name)
        _imported.append(True)
    return JOB_TYPES


def register_job_type(job_type: JobType) -> JobType:
    """Make a job type available to schedules (at import time)."""
    JOB_TYPES[job_type.name] = job_type
    return job_type


def job_types() -> list[JobTypePublic]:
    """Every registered job type with the JSON schema of its parameters."""
    return [
        JobTypePublic(name=t.name, description=t.description, params_schema=t.params.model_json_schema())
        for t in _types().values()
    ]


def _params(job_type: str, params: dict[str, Any]) -> BaseModel:
    found = _types().get(job_type)
    if found is None:
        raise BadRequest(f"unknown job type {job_type!r}; registered: {sorted(_types())}", field="job_type")
    try:
        return found.params.model_validate(params)
    except ValidationError as exc:
        raise ValidationFailed.of_validation(exc.errors(), under="params") from exc


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
    work = ctx.dispatcher.get()
    if work.get_schedule(data.name) is not None:
        raise AlreadyExists(f"a schedule named {data.name!r} exists", field="name")
    context = {"schedule": data.name, "job_type": data.job_type, "params": params.model_dump(mode="json")}
    work.create_schedule(data.name, FIRE_WORKFLOW, data.cron, context, data.timezone)
    return get(ctx, data.name)


def get(ctx: AppContext, name: str) -> SchedulePublic:
    """One schedule, or ``NotFound``."""
    found = ctx.dispatcher.get().get_schedule(name)
    if found is None or found.get("workflow_name") != FIRE_WORKFLOW:
        raise NotFound(f"schedule {name!r} does not exist", field="name")
    return public(found)


def list_all(ctx: AppContext) -> list[SchedulePublic]:
    """Every schedule, by name."""
    return sorted(
        (public(s) for s in ctx.dispatcher.get().list_schedules(FIRE_WORKFLOW)), key=lambda s: s.name
    )


def delete(ctx: AppContext, name: str) -> None:
    """Delete a schedule; jobs it already started are kept."""
    get(ctx, name)
    ctx.dispatcher.get().delete_schedule(name)


def set_paused(ctx: AppContext, name: str, paused: bool) -> SchedulePublic:
    """Pause or resume a schedule."""
    get(ctx, name)
    ctx.dispatcher.get().set_schedule_paused(name, paused)
    return get(ctx, name)


def fire(ctx: AppContext, context: dict[str, Any], slot: str) -> str | None:
    """Start the schedule's job for one slot (idempotent per slot); returns the job id, if any."""
    schedule = context.get("schedule", "")
    job_type = _types().get(context.get("job_type", ""))
    if job_type is None:
        log.error("schedule names an unknown job type", extra={"schedule": schedule, "context": context})
        return None
    params = job_type.params.model_validate(context.get("params", {}))
    return job_type.run(ctx, params, f"{schedule}@{slot}")
