"""What the queue monitor reads from DBOS's own ``workflow_status`` table.

``DBOSClient.list_workflows`` returns one object per workflow: counting a busy hour of workflows per
queue and status through it would load every one of them, where one GROUP BY answers. So these
reads are the only raw SQL on DBOS's tables; ``tests/durable/test_system.py`` runs them against a real
DBOS system database (dbos 3.4.0) and fails if its columns change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from modelyard.durable.status import WorkState, engine_statuses, from_engine

if TYPE_CHECKING:
    from modelyard.context import AppContext


@dataclass(frozen=True, slots=True)
class WorkflowCount:
    """Workflows of one queue in one state: how many, the oldest creation, how many ended recently."""

    queue: str
    state: WorkState
    count: int
    oldest_ms: int | None
    recent: int


def _read(ctx: AppContext, sql: str, params: dict[str, Any]) -> list[Any]:
    engine, table = ctx.db.system_table("workflow_status")
    with engine.connect() as conn:
        return list(conn.execute(text(sql.format(table=table)), params).all())


def workflow_counts(ctx: AppContext, *, since: datetime, recent_since: datetime) -> list[WorkflowCount]:
    """Per queue and state: active workflows, and those that ended since ``since`` (``recent``: since
    ``recent_since``)."""
    active = ", ".join(f"'{s}'" for s in engine_statuses(WorkState.WAITING, WorkState.RUNNING))
    rows = _read(
        ctx,
        "SELECT queue_name, status, COUNT(*), MIN(created_at), "
        f"SUM(CASE WHEN status NOT IN ({active}) AND COALESCE(completed_at, updated_at) >= :recent "
        "THEN 1 ELSE 0 END) "
        f"FROM {{table}} WHERE queue_name IS NOT NULL AND (status IN ({active}) "
        "OR COALESCE(completed_at, updated_at) >= :since) GROUP BY queue_name, status",
        {"since": int(since.timestamp() * 1000), "recent": int(recent_since.timestamp() * 1000)},
    )
    counts: dict[tuple[str, WorkState], WorkflowCount] = {}
    for queue, status, count, oldest, recent in rows:
        state = from_engine(status)
        had = counts.get((queue, state))
        if had is not None:  # two DBOS statuses of one state (ENQUEUED and DELAYED, say)
            count, recent = count + had.count, int(recent or 0) + had.recent
            oldest = min((o for o in (oldest, had.oldest_ms) if o is not None), default=None)
        counts[(queue, state)] = WorkflowCount(queue, state, int(count), oldest, int(recent or 0))
    return list(counts.values())


def workflow_history(ctx: AppContext, *, since: datetime, step_seconds: int) -> list[tuple[str, int, int]]:
    """Per queue and step since ``since``: how many workflows ended in it, as (queue, step, count)."""
    active = ", ".join(f"'{s}'" for s in engine_statuses(WorkState.WAITING, WorkState.RUNNING))
    rows = _read(
        ctx,
        "SELECT queue_name, (COALESCE(completed_at, updated_at) - :since) / :step AS step, COUNT(*) "
        f"FROM {{table}} WHERE queue_name IS NOT NULL AND status NOT IN ({active}) "
        "AND COALESCE(completed_at, updated_at) >= :since GROUP BY queue_name, step",
        {"since": int(since.timestamp() * 1000), "step": step_seconds * 1000},
    )
    return [(str(queue), int(step), int(count)) for queue, step, count in rows]


def running_work(ctx: AppContext) -> dict[str, list[str]]:
    """Ids of the workflows each executor is running now."""
    (running,) = engine_statuses(WorkState.RUNNING)
    out: dict[str, list[str]] = {}
    for executor_id, workflow_id in _read(
        ctx, "SELECT executor_id, workflow_uuid FROM {table} WHERE status = :status", {"status": running}
    ):
        out.setdefault(executor_id or "", []).append(workflow_id)
    return out
