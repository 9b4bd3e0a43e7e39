"""The dispatcher that runs in every worker (a ``claims.ClaimLoop``): it claims batches of ready stage
runs, one stage at a time, and starts one durable batch workflow per batch (its id is the batch id).

Durability is amortised: one workflow (one checkpointed step) settles a whole batch, instead of one
workflow per event per stage. Each stage is its own queue (its ready runs, oldest first) with its own
limits: at most ``concurrency`` batches of it run at once over all workers, ``batch_size`` events each;
a worker claims only what it can start now (``pipeline_worker_batches``). Deeper stages are served first,
so events in flight finish before new ones start.

A claim is an atomic ``UPDATE ... WHERE state = 'ready'`` (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so
two dispatchers never claim the same run. Runs claimed by a dispatcher that died before starting their
workflow, or whose workflow ended in error, are made ready again by ``sweep`` after a timeout.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from functools import partial

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.orm import aliased

from modelyard.claims import Claim, ClaimLoop, Starter, StatusLookup, sweep_stale
from modelyard.context import AppContext
from modelyard.db import new_id, utcnow
from modelyard.errors import PipelineNotFound
from modelyard.pipelines.models import Event, EventState, Pipeline, StageRun, StageState
from modelyard.pipelines.run.settle import advance_events
from modelyard.pipelines.service import load_spec
from modelyard.pipelines.spec import Limits

log = logging.getLogger("modelyard.pipelines")


def claim(ctx: AppContext, pipeline_id: str, stage: str, size: int) -> tuple[str, int] | None:
    """Claim up to ``size`` ready runs of one stage as a new batch; returns (batch id, runs) or None."""
    batch_id = new_id()
    now = utcnow()
    ids = (
        select(StageRun.id)
        .where(
            StageRun.pipeline_id == pipeline_id,
            StageRun.stage == stage,
            StageRun.state == StageState.READY,
            StageRun.ready_at <= now,
        )
        .order_by(StageRun.id)
        .limit(size)
        .with_for_update(skip_locked=True)
        # materialised, so PostgreSQL runs the locking LIMIT query once (as a plain IN subquery it may
        # run it per row and claim more than ``size``)
        .cte("claim")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    with ctx.uow() as session:
        count = session.execute(  # type: ignore[attr-defined]
            update(StageRun)
            .where(StageRun.id.in_(select(ids.c.id)), StageRun.state == StageState.READY)
            .values(state=StageState.RUNNING, batch_id=batch_id, claimed_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if count < 0:  # SQLite's driver does not count the rows of a statement that starts with WITH
            count = session.scalar(select(func.count()).where(StageRun.batch_id == batch_id)) or 0
    return (batch_id, count) if count else None


def unclaim(ctx: AppContext, batch_ids: list[str]) -> int:
    """Make the still-running runs of these batches ready again."""
    if not batch_ids:
        return 0
    with ctx.uow() as session:
        return int(
            session.execute(  # type: ignore[attr-defined]
                update(StageRun)
                .where(StageRun.batch_id.in_(batch_ids), StageRun.state == StageState.RUNNING)
                .values(state=StageState.READY, batch_id=None, ready_at=utcnow())
                .execution_options(synchronize_session=False)
            ).rowcount
        )


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


def sweep(ctx: AppContext, status: StatusLookup) -> int:
    """Ready again the runs of batches claimed long ago whose workflow never started or has ended."""
    waiting, timeout = StageRun.state == StageState.RUNNING, ctx.settings.pipeline_claim_timeout_seconds
    return sweep_stale(
        ctx,
        StageRun.batch_id,
        StageRun.claimed_at,
        waiting,
        timeout,
        status,
        partial(unclaim, ctx),
        "pipelines",
    )


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


class StageDispatcher(ClaimLoop):
    """Claims batches of ready stage runs for this worker, deeper stages first, within each stage's limits."""

    what = "pipelines"

    def __init__(
        self, ctx: AppContext, starter: Starter, *, slots: int | None = None, parallel_starts: bool = False
    ):
        super().__init__(
            starter,
            slots=slots or ctx.settings.pipeline_worker_batches,
            poll_seconds=ctx.settings.pipeline_poll_seconds,
            parallel_starts=parallel_starts,
        )
        self.ctx = ctx
        self._latest: tuple[float, dict[str, int]] = (0.0, {})

    def _limits(self, pipeline_id: str, stage: str) -> tuple[Limits, int] | None:
        """The stage's limits under the pipeline's latest spec, and its depth (deeper is served first);
        None if the pipeline was deleted meanwhile."""
        at, versions = self._latest
        if pipeline_id not in versions or time.monotonic() - at > 2.0:
            with self.ctx.uow() as session:
                versions = dict(session.execute(select(Pipeline.id, Pipeline.latest_version)).all())
            self._latest = (time.monotonic(), versions)
        if pipeline_id not in versions:
            return None
        try:
            spec = load_spec(self.ctx, pipeline_id, versions[pipeline_id])[1]
        except PipelineNotFound:
            return None
        order = spec.closure(None)
        if stage not in order:
            return Limits(), 0
        return spec.stage_limits(stage), order.index(stage)

    def claim(self, free: int) -> list[Claim]:
        """See ``ClaimLoop.claim``."""
        groups = ready_groups(self.ctx)
        if not groups:
            return []
        running = running_batches(self.ctx)
        plans = []
        for pipeline_id, stage, count in groups:
            found = self._limits(pipeline_id, stage)
            if found is not None:
                plans.append((-found[1], pipeline_id, stage, count, found[0]))
        plans.sort(key=lambda p: (p[0], p[1], p[2]))
        batches: list[Claim] = []
        for _, pipeline_id, stage, count, limits in plans:
            allowed = limits.concurrency - running.get((pipeline_id, stage), 0)
            while allowed > 0 and count > 0 and len(batches) < free:
                claimed = claim(self.ctx, pipeline_id, stage, limits.batch_size)
                if claimed is None:
                    break
                batches.append((claimed[0], ()))
                allowed -= 1
                count -= claimed[1]
        return batches

    def unclaim(self, batch_ids: list[str]) -> None:
        """See ``ClaimLoop.unclaim``."""
        unclaim(self.ctx, batch_ids)
