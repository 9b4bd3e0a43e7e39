"""Schedule routes: ``/api/v1/schedules``."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from modelyard.bodies import OffLoopJSONRoute
from modelyard.deps import Ctx, ReadKey, WriteKey
from modelyard.schedules import service as schedules
from modelyard.schedules.schemas import JobTypePublic, ScheduleCreate, ScheduleList, SchedulePublic

router = APIRouter(prefix="/api/v1/schedules", tags=["schedules"], route_class=OffLoopJSONRoute)


@router.get("", response_model=ScheduleList)
def list_schedules(ctx: Ctx, _: ReadKey) -> ScheduleList:
    """Every schedule with its job type, parameters, and when it fired last and fires next."""
    return ScheduleList(items=schedules.list_all(ctx))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SchedulePublic)
def create_schedule(body: ScheduleCreate, ctx: Ctx, _: WriteKey) -> SchedulePublic:
    """Create a cron schedule of a registered job type. It fires once per slot however many workers
    run; each firing of `batch_predict` is a job like any other (listed under `/api/v1/jobs`)."""
    return schedules.create(ctx, body)


@router.get("/job-types", response_model=list[JobTypePublic])
def list_job_types(_: ReadKey) -> list[JobTypePublic]:
    """The job types a schedule can start, with the JSON schema of their parameters."""
    return schedules.job_types()


@router.get("/{name}", response_model=SchedulePublic)
def get_schedule(name: str, ctx: Ctx, _: ReadKey) -> SchedulePublic:
    """One schedule."""
    return schedules.get(ctx, name)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_schedule(name: str, ctx: Ctx, _: WriteKey) -> Response:
    """Delete a schedule; the jobs it started stay."""
    schedules.delete(ctx, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{name}/pause", response_model=SchedulePublic)
def pause_schedule(name: str, ctx: Ctx, _: WriteKey) -> SchedulePublic:
    """Stop a schedule from firing until it is resumed."""
    return schedules.set_paused(ctx, name, True)


@router.post("/{name}/resume", response_model=SchedulePublic)
def resume_schedule(name: str, ctx: Ctx, _: WriteKey) -> SchedulePublic:
    """Let a paused schedule fire again (from its next slot)."""
    return schedules.set_paused(ctx, name, False)
