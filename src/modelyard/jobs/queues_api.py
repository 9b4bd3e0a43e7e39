"""Queue monitoring routes: ``/api/v1/queues`` and its dead letters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from modelyard.auth import PredictKey, ReadKey
from modelyard.bodies import OffLoopJSONRoute
from modelyard.context import AppContext, get_context
from modelyard.jobs import queues, service
from modelyard.jobs.schemas import DeadLetterList, JobPublic, QueuesPublic

router = APIRouter(prefix="/api/v1/queues", tags=["queues"], route_class=OffLoopJSONRoute)
Ctx = Annotated[AppContext, Depends(get_context)]


@router.get("", response_model=QueuesPublic)
def get_queues(ctx: Ctx, _: ReadKey) -> QueuesPublic:
    """Every durable queue (waiting, running, completed and failed in the last hour, age of the oldest
    waiting item, throughput), every worker seen in the last day (host, pid, heartbeat, current work,
    and who recovered its work if it died), and the number of dead letters."""
    return queues.snapshot(ctx)


@router.get("/dead-letters", response_model=DeadLetterList)
def list_dead_letters(
    ctx: Ctx,
    _: ReadKey,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DeadLetterList:
    """Chunks that failed every attempt, newest first, with their error and traceback."""
    with ctx.uow() as session:
        items, total = service.list_dead_letters(session=session, offset=offset, limit=limit)
    return DeadLetterList(items=items, total=total)


@router.post(
    "/dead-letters/{job_id}/{index}/retry", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic
)
def retry_dead_letter(job_id: str, index: int, response: Response, ctx: Ctx, _: PredictKey) -> JobPublic:
    """Re-submit one dead chunk; its job runs again until the chunk is done (or dead again)."""
    job = service.retry(ctx, job_id, [index])
    response.headers["Location"] = f"{service.API}/{job_id}"
    return service.job_public(job)
