"""The queue page: per queue, what waits, runs and finished lately; per worker, its heartbeat and
current work (and whether a live worker recovered it); and the dead-letter count. The same figures
are exported at ``/metrics`` by ``QueueCollector``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from modelyard.db import aware, epoch_seconds, utcnow
from modelyard.durable import Monitor, Worker, WorkState, import_workflows, system
from modelyard.durable.queue import DECLARED
from modelyard.ops.schemas import (
    QueueHistoryPublic,
    QueuePublic,
    QueuesHistoryPublic,
    QueuesPublic,
    WorkerPublic,
)

if TYPE_CHECKING:
    from modelyard.context import AppContext

log = logging.getLogger("modelyard.ops.queues")
RECENT_SECONDS = 300
WORKERS_SHOWN_FOR = timedelta(days=1)


def _table_queue(ctx: AppContext, name: str, q: Monitor) -> QueuePublic:
    """The figures of a claimed queue, read from its table."""
    now = utcnow()
    hour, recent = now - timedelta(hours=1), now - timedelta(seconds=RECENT_SECONDS)
    state, finished = q.state, q.finished_at
    with ctx.uow() as session:
        live: dict[str, int] = dict(
            session.execute(
                select(state, func.count()).where(state.in_([q.waiting, q.running])).group_by(state)
            ).all()
        )
        oldest = session.scalar(select(func.min(q.waiting_since)).where(state == q.waiting))
        ended: dict[str, int] = dict(
            session.execute(
                select(state, func.count())
                .where(finished >= hour, state.in_([*q.succeeded, *q.failed]))
                .group_by(state)
            ).all()
        )
        lately = session.scalar(
            select(func.count()).where(finished >= recent, state.in_([*q.succeeded, *q.failed]))
        )
    return QueuePublic(
        name=name,
        length=live.get(q.waiting, 0),
        running=live.get(q.running, 0),
        completed_last_hour=sum(ended.get(s, 0) for s in q.succeeded),
        failed_last_hour=sum(ended.get(s, 0) for s in q.failed),
        oldest_waiting_seconds=(now - aware(oldest)).total_seconds() if oldest is not None else None,
        throughput_per_second=(lately or 0) / RECENT_SECONDS,
    )


def _monitored() -> list[tuple[str, Monitor]]:
    import_workflows()  # every part's claimed queues are declared
    return [(q.name, q.monitor) for q in DECLARED.values() if q.monitor is not None]


def _queues(ctx: AppContext) -> list[QueuePublic]:
    now = utcnow()
    counts = system.workflow_counts(
        ctx, since=now - timedelta(hours=1), recent_since=now - timedelta(seconds=RECENT_SECONDS)
    )
    out = [_table_queue(ctx, name, q) for name, q in _monitored()]
    now_ms = now.timestamp() * 1000
    for name in sorted({c.queue for c in counts}):
        mine = {c.state: c for c in counts if c.queue == name}
        waiting, running = mine.get(WorkState.WAITING), mine.get(WorkState.RUNNING)
        oldest = waiting.oldest_ms if waiting is not None else None
        ended = [c for c in mine.values() if c.state in (WorkState.SUCCEEDED, WorkState.FAILED)]
        out.append(
            QueuePublic(
                name=name,
                length=waiting.count if waiting is not None else 0,
                running=running.count if running is not None else 0,
                completed_last_hour=sum(c.count for c in ended if c.state == WorkState.SUCCEEDED),
                failed_last_hour=sum(c.count for c in ended if c.state == WorkState.FAILED),
                oldest_waiting_seconds=(now_ms - oldest) / 1000 if oldest is not None else None,
                throughput_per_second=sum(c.recent for c in ended) / RECENT_SECONDS,
            )
        )
    return out


def _workers(ctx: AppContext) -> list[WorkerPublic]:
    now = utcnow()
    running = system.running_work(ctx)
    with ctx.uow() as session:
        rows = session.scalars(
            select(Worker)
            .where(Worker.heartbeat_at >= now - WORKERS_SHOWN_FOR)
            .order_by(Worker.started_at.desc())
        ).all()
        return [
            WorkerPublic(
                executor_id=w.executor_id,
                host=w.host,
                pid=w.pid,
                queues=[str(q) for q in w.queues],
                state=w.state,
                started_at=aware(w.started_at),
                heartbeat_at=aware(w.heartbeat_at),
                heartbeat_age_seconds=(now - aware(w.heartbeat_at)).total_seconds(),
                current_work=sorted(running.get(w.executor_id, [])),
                recovered_by=w.recovered_by,
                recovered_at=aware(w.recovered_at),
                recovered_workflows=w.recovered_workflows,
            )
            for w in rows
        ]


def dead_letter_count(ctx: AppContext) -> int:
    """How many items of every claimed queue failed every attempt."""
    total = 0
    with ctx.uow() as session:
        for _, q in _monitored():
            if q.dead:
                total += session.scalar(select(func.count()).where(q.state.in_(q.dead))) or 0
    return total


def snapshot(ctx: AppContext) -> QueuesPublic:
    """Queues, workers and the dead-letter count, read now."""
    ctx.dispatcher.get()  # makes sure DBOS's tables exist before they are read
    return QueuesPublic(queues=_queues(ctx), workers=_workers(ctx), dead_letters=dead_letter_count(ctx))


def _table_history(ctx: AppContext, q: Monitor, since: datetime, step_seconds: int) -> dict[int, int]:
    """Finished rows of a claimed queue per step since ``since``, counted in the database by step."""
    step = (epoch_seconds(q.finished_at) - int(since.timestamp())) // step_seconds
    with ctx.uow() as session:
        rows = session.execute(
            select(step, func.count())
            .where(q.state.in_([*q.succeeded, *q.failed]), q.finished_at >= since)
            .group_by(step)
        ).all()
    return {int(s): int(n) for s, n in rows}


def history(ctx: AppContext, *, minutes: int = 60, step_seconds: int = 60) -> QueuesHistoryPublic:
    """Every queue's finished items per step over the last ``minutes``, read from the stored rows."""
    ctx.dispatcher.get()  # makes sure DBOS's tables exist before they are read
    steps = max(1, minutes * 60 // step_seconds)
    # whole steps, so a step means the same minutes on every reading
    end = int(utcnow().timestamp()) // step_seconds * step_seconds + step_seconds
    since = datetime.fromtimestamp(end - steps * step_seconds, UTC)
    per_queue = {name: _table_history(ctx, q, since, step_seconds) for name, q in _monitored()}
    for queue, step, count in system.workflow_history(ctx, since=since, step_seconds=step_seconds):
        per_queue.setdefault(queue, {})[step] = per_queue.get(queue, {}).get(step, 0) + count
    return QueuesHistoryPublic(
        since=since,
        step_seconds=step_seconds,
        queues=[
            QueueHistoryPublic(name=name, finished=[counts.get(i, 0) for i in range(steps)])
            for name, counts in per_queue.items()
        ],
    )


class QueueCollector(Collector):
    """Exports the queue page at ``/metrics`` (read at scrape time)."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges; nothing (and a log line) if the databases cannot be read."""
        try:
            page = snapshot(self.ctx)
        except Exception:
            log.exception("queue metrics unavailable")
            return
        per_queue = {
            "length": ("modelyard_queue_length", "Items waiting in the queue."),
            "running": ("modelyard_queue_running", "Items running now."),
            "completed_last_hour": (
                "modelyard_queue_completed_last_hour",
                "Items completed in the last hour.",
            ),
            "failed_last_hour": ("modelyard_queue_failed_last_hour", "Items failed in the last hour."),
            "oldest_waiting_seconds": (
                "modelyard_queue_oldest_waiting_seconds",
                "Age of the oldest waiting item.",
            ),
            "throughput_per_second": (
                "modelyard_queue_throughput_per_second",
                "Items finished per second (5 min).",
            ),
        }
        for attr, (name, doc) in per_queue.items():
            gauge = GaugeMetricFamily(name, doc, labels=["queue"])
            for q in page.queues:
                value = getattr(q, attr)
                gauge.add_metric([q.name], float(value or 0))
            yield gauge
        up = GaugeMetricFamily(
            "modelyard_worker_up", "1 while a worker's heartbeat is fresh.", labels=["executor_id", "host"]
        )
        age = GaugeMetricFamily(
            "modelyard_worker_heartbeat_age_seconds",
            "Seconds since a worker's heartbeat.",
            labels=["executor_id"],
        )
        timeout = self.ctx.settings.heartbeat_timeout_seconds
        for w in page.workers:
            alive = w.state == "alive" and w.heartbeat_age_seconds < timeout
            up.add_metric([w.executor_id, w.host], 1.0 if alive else 0.0)
            age.add_metric([w.executor_id], w.heartbeat_age_seconds)
        yield up
        yield age
        yield GaugeMetricFamily(
            "modelyard_dead_letters", "Items that failed every attempt.", value=page.dead_letters
        )
