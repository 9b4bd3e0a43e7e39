"""The claimed queue of stage runs (a ``durable.ClaimedQueue``; see ``durable.queue``): every worker
claims batches of ready stage runs, one stage at a time, and starts one durable batch workflow per batch
(its id is the batch id).

Durability is amortised: one workflow (one checkpointed step) settles a whole batch, instead of one
workflow per event per stage. Each stage is its own group of ready runs (oldest first) with its own
limits, the queue's policy (``StagePolicy``): at most ``concurrency`` batches of it run at once over all
workers, ``batch_size`` events each; a worker claims only what it can start now
(``pipeline_worker_batches``). Deeper stages are served first, so events in flight finish before new
ones start. Runs claimed by a worker that died before starting their workflow, or whose workflow ended
in error, are made ready again by the queue's sweep after ``pipeline_claim_timeout_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import aliased

from modelyard.context import AppContext
from modelyard.db import utcnow
from modelyard.durable import ClaimedQueue, Group, Monitor
from modelyard.errors import PipelineNotFound
from modelyard.pipelines.models import Event, EventState, Pipeline, StageRun, StageState
from modelyard.pipelines.run.settle import advance_events
from modelyard.pipelines.service import QUEUE, load_spec
from modelyard.pipelines.spec import Limits

log = logging.getLogger("modelyard.pipelines")


def ready_groups(ctx: AppContext) -> list[tuple[str, str, int]]:
    """(pipeline id, stage, ready runs) of every stage with runs ready now."""
    with ctx.uow() as session:
        rows = session.execute(
            select(StageRun.pipeline_id, StageRun.stage, func.count())
            .where(StageRun.state == StageState.READY, StageRun.ready_at <= utcnow())
            .group_by(StageRun.pipeline_id, StageRun.stage)
        ).all()
    return [(p, s, int(n)) for p, s, n in rows]


def running_batches(ctx: AppContext) -> dict[tuple[str, str], int]:
    """Batches running now per (pipeline id, stage), over all workers."""
    with ctx.uow() as session:
        rows = session.execute(
            select(StageRun.pipeline_id, StageRun.stage, func.count(func.distinct(StageRun.batch_id)))
            .where(StageRun.state == StageState.RUNNING)
            .group_by(StageRun.pipeline_id, StageRun.stage)
        ).all()
    return {(p, s): int(n) for p, s, n in rows}


def reconcile(ctx: AppContext, *, older_than_seconds: float = 30.0) -> int:
    """Advance events left with pending runs and nothing ready or running (a safety net; returns how many)."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    other = aliased(StageRun)
    with ctx.uow() as session:
        eids = list(
            session.scalars(
                select(StageRun.event_id)
                .join(Event, Event.id == StageRun.event_id)
                .where(
                    StageRun.state == StageState.PENDING,
                    Event.state.in_([EventState.RUNNING, EventState.FAILED]),
                    Event.started_at < cutoff,
                    ~exists().where(
                        and_(
                            other.event_id == StageRun.event_id,
                            other.state.in_([StageState.READY, StageState.RUNNING]),
                        )
                    ),
                )
                .distinct()
                .limit(500)
            )
        )
    if eids:
        advance_events(ctx, set(eids))
    return len(eids)


class StagePolicy:
    """The stage runs queue's policy: the ready stages, deepest first, each within its own limits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: tuple[float, dict[str, int]] = (0.0, {})

    def _limits(self, ctx: AppContext, pipeline_id: str, stage: str) -> tuple[Limits, int] | None:
        """The stage's limits under the pipeline's latest spec, and its depth (deeper is served first);
        None if the pipeline was deleted meanwhile."""
        with self._lock:
            at, versions = self._latest
        if pipeline_id not in versions or time.monotonic() - at > 2.0:
            with ctx.uow() as session:
                versions = dict(session.execute(select(Pipeline.id, Pipeline.latest_version)).all())
            with self._lock:
                self._latest = (time.monotonic(), versions)
        if pipeline_id not in versions:
            return None
        try:
            spec = load_spec(ctx, pipeline_id, versions[pipeline_id])[1]
        except PipelineNotFound:
            return None
        order = spec.closure(None)
        if stage not in order:
            return Limits(), 0
        return spec.stage_limits(stage), order.index(stage)

    def __call__(self, ctx: AppContext, free: int) -> list[Group]:
        """Groups of ready runs to claim from, deepest stage first."""
        groups = ready_groups(ctx)
        if not groups:
            return []
        running = running_batches(ctx)
        plans = []
        for pipeline_id, stage, count in groups:
            found = self._limits(ctx, pipeline_id, stage)
            if found is not None:
                plans.append((-found[1], pipeline_id, stage, count, found[0]))
        plans.sort(key=lambda p: (p[0], p[1], p[2]))
        return [
            Group(
                where=(StageRun.pipeline_id == pipeline_id, StageRun.stage == stage),
                claims=limits.concurrency - running.get((pipeline_id, stage), 0),
                size=limits.batch_size,
                rows=count,
            )
            for _, pipeline_id, stage, count, limits in plans
        ]


def _ready() -> tuple[Any, ...]:
    return (StageRun.state == StageState.READY, StageRun.ready_at <= utcnow())


STAGE_RUNS = ClaimedQueue(
    name=QUEUE,
    model=StageRun,
    key=(StageRun.id,),
    claim_id=StageRun.batch_id,
    claimed_at=StageRun.claimed_at,
    waiting=_ready,
    claimed=lambda: (StageRun.state == StageState.RUNNING,),
    order_by=(StageRun.id,),
    args=lambda _claimed: (),
    batch_size=lambda s: s.pipeline_batch_size,
    slots=lambda s: s.pipeline_worker_batches,
    poll_seconds=lambda s: s.pipeline_poll_seconds,
    claim_timeout=lambda s: s.pipeline_claim_timeout_seconds,
    on_claim=lambda: {"state": StageState.RUNNING},
    on_release=lambda: {"state": StageState.READY, "ready_at": utcnow()},
    policy=StagePolicy(),
    parallel_starts=True,
    needs_keys=False,
    monitor=Monitor(
        state=StageRun.state,
        waiting_since=StageRun.ready_at,
        finished_at=StageRun.finished_at,
        waiting=StageState.READY,
        running=StageState.RUNNING,
        succeeded=(StageState.DONE,),
        failed=(StageState.FAILED,),
    ),
)
