"""Watchers: the queue watcher (per stage: waiting, running, done, failed, oldest waiting, throughput; per
state: events) and the stage watcher (failures grouped by error type, with example events), as snapshots
and as server-sent event streams that send a snapshot whenever it changes.

Workers may be other processes, so streams follow the event log (``durable.log``): a snapshot is read
again when the log reports a stage run or event of what the stream watches ended. The same counts, for
every pipeline, are exported at ``/metrics`` by ``PipelineCollector``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel
from sqlalchemy import func, select

from modelyard.context import AppContext
from modelyard.db import utcnow
from modelyard.durable import log as event_log
from modelyard.errors import PipelineNotFound
from modelyard.pipelines.events import get_event
from modelyard.pipelines.models import Event, EventState, Pipeline, StageRun, StageState
from modelyard.pipelines.schemas import ErrorGroup, ErrorReport, EventCounts, QueueSnapshot, StageQueue
from modelyard.pipelines.service import get_pipeline, load_spec
from modelyard.sse import SseEvent

log = logging.getLogger("modelyard.pipelines")
THROUGHPUT_WINDOW_S = 60.0


def queue_snapshot(ctx: AppContext, pipeline_name: str) -> QueueSnapshot:
    """Per stage queues and per state event counts of a pipeline, now."""
    now = utcnow()
    since = now - timedelta(seconds=THROUGHPUT_WINDOW_S)
    with ctx.uow() as session:
        pipeline = get_pipeline(session=session, name=pipeline_name)
        pid = pipeline.id
        counts = session.execute(
            select(StageRun.stage, StageRun.state, func.count())
            .where(StageRun.pipeline_id == pid)
            .group_by(StageRun.stage, StageRun.state)
        ).all()
        oldest = dict(
            session.execute(
                select(StageRun.stage, func.min(StageRun.ready_at))
                .where(StageRun.pipeline_id == pid, StageRun.state == StageState.READY)
                .group_by(StageRun.stage)
            ).all()
        )
        recent = dict(
            session.execute(
                select(StageRun.stage, func.count())
                .where(
                    StageRun.pipeline_id == pid,
                    StageRun.finished_at >= since,
                    StageRun.state == StageState.DONE,
                )
                .group_by(StageRun.stage)
            ).all()
        )
        events = dict(
            session.execute(
                select(Event.state, func.count()).where(Event.pipeline_id == pid).group_by(Event.state)
            ).all()
        )
    order = load_spec(ctx, pid, pipeline.latest_version)[1].closure(None)
    per: dict[str, dict[str, int]] = {}
    for stage, state, n in counts:
        per.setdefault(stage, {})[state] = int(n)
    stages = []
    for stage in sorted(per, key=lambda s: order.index(s) if s in order else len(order)):
        c = per[stage]
        first = oldest.get(stage)
        age = None
        if first is not None:
            first = first if first.tzinfo else first.replace(tzinfo=now.tzinfo)
            age = round(max((now - first).total_seconds(), 0.0), 3)
        stages.append(
            StageQueue(
                stage=stage,
                pending=c.get(StageState.PENDING, 0),
                ready=c.get(StageState.READY, 0),
                running=c.get(StageState.RUNNING, 0),
                done=c.get(StageState.DONE, 0),
                failed=c.get(StageState.FAILED, 0),
                skipped=c.get(StageState.SKIPPED, 0),
                oldest_ready_seconds=age,
                throughput_per_s=round(recent.get(stage, 0) / THROUGHPUT_WINDOW_S, 3),
            )
        )
    return QueueSnapshot(
        pipeline=pipeline_name,
        at=now,
        events=EventCounts(**{s.value: int(events.get(s, 0)) for s in EventState}),
        stages=stages,
    )


# Runs in these states are not failures (an error_type on them is of an earlier attempt, or "Skipped"):
# the rest are final failures and failed attempts waiting for, or in, a retry. Written as an exclusion
# so that PostgreSQL reads a group's newest failures in index order (an IN list of states would make it
# sort all of them first).
NOT_FAILURES = (StageState.DONE, StageState.SKIPPED, StageState.PENDING)


def error_report(
    ctx: AppContext, pipeline_name: str, *, stage: str | None = None, examples: int = 5
) -> ErrorReport:
    """Failures of a pipeline's stages grouped by error type (final ones and attempts being retried), each
    with the newest ``examples`` events it hit. Read from the index of runs with an error: the work grows
    with the failures and the groups, never with the runs that went well."""
    with ctx.uow() as session:
        pid = get_pipeline(session=session, name=pipeline_name).id
        where = [
            StageRun.pipeline_id == pid,
            StageRun.error_type.is_not(None),
            StageRun.state.not_in(NOT_FAILURES),
        ]
        if stage is not None:
            where.append(StageRun.stage == stage)
        groups = session.execute(
            select(StageRun.stage, StageRun.error_type, func.count(), func.max(StageRun.finished_at))
            .where(*where)
            .group_by(StageRun.stage, StageRun.error_type)
            .order_by(func.count().desc(), StageRun.stage, StageRun.error_type)
        ).all()
        out = []
        for stage_name, error_type, count, last_at in groups:
            newest = (
                select(StageRun.event_id, StageRun.error, StageRun.finished_at)
                .where(*where, StageRun.stage == stage_name, StageRun.error_type == error_type)
                .order_by(StageRun.finished_at.desc())
                .limit(examples)
                .subquery()
            )
            hit = session.execute(
                select(Event.name, newest.c.error)
                .join(newest, newest.c.event_id == Event.id)
                .order_by(newest.c.finished_at.desc())
            ).all()
            out.append(
                ErrorGroup(
                    stage=stage_name,
                    error_type=error_type,
                    count=int(count),
                    last_at=last_at,
                    example=hit[0][1] if hit else None,
                    events=[name for name, _ in hit],
                )
            )
    return ErrorReport(pipeline=pipeline_name, at=utcnow(), groups=out)


# Snapshot streams re-read their snapshot when the event log reports a change they watch; what the log does
# not carry (submissions, claims) shows at the latest after this many intervals.
REFRESH_INTERVALS = 20


async def _changes(
    ctx: AppContext,
    snapshot: Callable[[], BaseModel],
    name: str,
    interval: float,
    ignore: set[str],
    stop: Callable[[BaseModel], bool],
    watched: Callable[[event_log.LogEvent], bool],
    subject: str | None = None,
) -> AsyncIterator[SseEvent]:
    """The snapshot, and again (at most every ``interval`` seconds) whenever it changed after a ``watched``
    event of the log; each with the log id it reflects."""
    follower = event_log.Follower(ctx, ("pipelines.",), subject)
    seen = [await asyncio.to_thread(follower.start)]
    changed = asyncio.Event()

    async def listen() -> None:
        async for event in follower.stream():
            if watched(event):
                seen[0] = event.id
                changed.set()

    listener = asyncio.create_task(listen())
    try:
        last: Any = None
        while True:
            changed.clear()
            taken = time.monotonic()
            position = seen[0]
            current = await asyncio.to_thread(snapshot)
            comparable = current.model_dump(mode="json", exclude=ignore)
            if comparable != last:
                last = comparable
                yield SseEvent(name, current.model_dump(mode="json"), id=str(position))
            if stop(current):
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), interval * REFRESH_INTERVALS)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - taken)))
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


def _pipeline_id(ctx: AppContext, pipeline_name: str) -> str:
    with ctx.uow() as session:
        return get_pipeline(session=session, name=pipeline_name).id


def queue_stream(ctx: AppContext, pipeline_name: str, interval: float = 1.0) -> AsyncIterator[SseEvent]:
    """``queues`` events: the queue snapshot whenever it changes (re-read when the event log reports a
    stage run or event of the pipeline ended, at most every ``interval`` seconds)."""
    pid = _pipeline_id(ctx, pipeline_name)  # 404 before the stream starts
    return _changes(
        ctx,
        lambda: queue_snapshot(ctx, pipeline_name),
        "queues",
        interval,
        {"at"},
        lambda _: False,
        lambda e: e.data.get("pipeline_id") == pid,
    )


def error_stream(
    ctx: AppContext, pipeline_name: str, stage: str | None = None, interval: float = 2.0
) -> AsyncIterator[SseEvent]:
    """``errors`` events: the error report whenever it changes (re-read as ``queue_stream`` is)."""
    pid = _pipeline_id(ctx, pipeline_name)
    return _changes(
        ctx,
        lambda: error_report(ctx, pipeline_name, stage=stage),
        "errors",
        interval,
        {"at"},
        lambda _: False,
        lambda e: e.data.get("pipeline_id") == pid and e.data.get("state") != StageState.DONE,
    )


def event_stream(ctx: AppContext, event_id: str, interval: float = 0.5) -> AsyncIterator[SseEvent]:
    """``event`` events: the event whenever the event log reports one of its stage runs or the event
    itself ended; the stream ends when the event does."""
    get_event(ctx, event_id)  # 404 before the stream starts

    def final(current: BaseModel) -> bool:
        return EventState(getattr(current, "state")).is_final()  # noqa: B009

    return _changes(
        ctx, lambda: get_event(ctx, event_id), "event", interval, set(), final, lambda _: True, event_id
    )


class PipelineCollector(Collector):
    """Exports, at ``/metrics``, stage runs per pipeline, stage and state, and events per pipeline and
    state, read from the database at scrape time (every state is exported, zeros included)."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges; nothing (and a log line) if the database cannot be read."""
        try:
            stages, runs, events = self._counts()
        except Exception:
            log.exception("pipeline metrics unavailable")
            return
        run_gauge = GaugeMetricFamily(
            "modelyard_pipeline_stage_runs",
            "Stage runs by pipeline, stage and state.",
            labels=["pipeline", "stage", "state"],
        )
        event_gauge = GaugeMetricFamily(
            "modelyard_pipeline_events", "Events by pipeline and state.", labels=["pipeline", "state"]
        )
        for pipeline, names in stages.items():
            for stage in names:
                for state in StageState:
                    run_gauge.add_metric([pipeline, stage, state], runs.get((pipeline, stage, state), 0))
            for event_state in EventState:
                event_gauge.add_metric([pipeline, event_state], events.get((pipeline, event_state), 0))
        yield run_gauge
        yield event_gauge

    def _counts(
        self,
    ) -> tuple[dict[str, list[str]], dict[tuple[str, str, str], int], dict[tuple[str, str], int]]:
        """Stages per pipeline (in DAG order), run counts by (pipeline, stage, state), event counts by
        (pipeline, state)."""
        with self.ctx.uow() as session:
            pipelines = session.execute(select(Pipeline.id, Pipeline.name, Pipeline.latest_version)).all()
            run_rows = session.execute(
                select(StageRun.pipeline_id, StageRun.stage, StageRun.state, func.count()).group_by(
                    StageRun.pipeline_id, StageRun.stage, StageRun.state
                )
            ).all()
            event_rows = session.execute(
                select(Event.pipeline_id, Event.state, func.count()).group_by(Event.pipeline_id, Event.state)
            ).all()
        names = {pid: name for pid, name, _ in pipelines}
        runs = {(names[p], st, state): int(n) for p, st, state, n in run_rows if p in names}
        events = {(names[p], state): int(n) for p, state, n in event_rows if p in names}
        stages: dict[str, list[str]] = {}
        for pid, name, version in pipelines:
            try:
                order = load_spec(self.ctx, pid, version)[1].closure(None)
            except PipelineNotFound:  # deleted since it was read
                continue
            seen = sorted({st for p, st, _ in runs if p == name} - set(order))  # stages of older versions
            stages[name] = [*order, *seen]
        return stages, runs, events
