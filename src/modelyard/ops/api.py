"""The queue page's route: ``/api/v1/queues``."""

from __future__ import annotations

from fastapi import APIRouter

from modelyard.deps import Ctx, ReadKey
from modelyard.ops import queues
from modelyard.ops.schemas import QueuesPublic

router = APIRouter(prefix="/api/v1/queues", tags=["queues"])


@router.get("", response_model=QueuesPublic)
def get_queues(ctx: Ctx, _: ReadKey) -> QueuesPublic:
    """Every durable queue (waiting, running, completed and failed in the last hour, age of the oldest
    waiting item, throughput), every worker seen in the last day (host, pid, heartbeat, current work,
    and who recovered its work if it died), and the number of dead letters."""
    return queues.snapshot(ctx)
