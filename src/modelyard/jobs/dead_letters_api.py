"""Dead letters of jobs (chunks that failed every attempt), under the queue page:
``/api/v1/queues/dead-letters``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from modelyard.bodies import OffLoopJSONRoute
from modelyard.deps import Ctx, PredictKey, ReadKey
from modelyard.jobs import service
from modelyard.jobs.schemas import DeadLetterList, JobPublic

router = APIRouter(prefix="/api/v1/queues", tags=["queues"], route_class=OffLoopJSONRoute)


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
