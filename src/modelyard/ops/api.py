"""The queue page's route: ``/api/v1/queues``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from modelyard.deps import Ctx, ReadKey
from modelyard.ops import queues
from modelyard.ops.schemas import QueuesHistoryPublic, QueuesPublic

router = APIRouter(prefix="/api/v1/queues", tags=["queues"])


@router.get("", response_model=QueuesPublic)
def get_queues(ctx: Ctx, _: ReadKey) -> QueuesPublic:
    """Every durable queue (waiting, running, completed and failed in the last hour, age of the oldest
    waiting item, throughput), every worker seen in the last day (host, pid, heartbeat, current work,
    and who recovered its work if it died), and the number of dead letters."""
    return queues.snapshot(ctx)


@router.get("/history", response_model=QueuesHistoryPublic)
def get_history(
    ctx: Ctx, _: ReadKey, minutes: Annotated[int, Query(ge=1, le=24 * 60)] = 60
) -> QueuesHistoryPublic:
    """Items finished (succeeded or failed) per minute in every queue over the last `minutes`, oldest
    minute first, counted from the stored work of every process (the dashboard's throughput lines)."""
    return queues.history(ctx, minutes=minutes)
