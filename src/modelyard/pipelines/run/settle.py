"""Settling a batch: one transaction that records how each stage run ended (only runs still running in
that batch), makes dependents ready or skips them, and ends events whose last stage finished. A failed
attempt is retried after its backoff unless the error is permanent or the attempts are used up.

The events are locked (in id order, ``Database.locking``) first, so completions of one event's parallel
stages take turns and the last one sees the others."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from modelyard.context import AppContext
from modelyard.db import Database, utcnow
from modelyard.durable import log
from modelyard.fetch import is_permanent
from modelyard.pipelines.models import Event, EventState, RawFetch, StageRun, StageState
from modelyard.pipelines.service import load_spec
from modelyard.pipelines.spec import Retry
from modelyard.pipelines.stages import Outcome, error_type, raw


@dataclass(slots=True)
class Claimed:
    """A run of the batch with what the runner needs of it and of its event."""

    id: int
    event_id: str
    stage: str
    attempts: int
    force: bool
    event: str
    params: dict[str, Any]
    source: str
    version: int
    pipeline_id: str
    previous_key: str | None
    previous_logs: str | None


@dataclass(slots=True)
class Settled:
    """How a run ended in this batch: ``done``, ``ready`` (a retry later) or ``failed``."""

    run: Claimed
    state: str
    values: dict[str, Any] = field(default_factory=dict)
    fetched: raw.Fetched | None = None


def failure(run: Claimed, out: Outcome, retry: Retry, now: datetime) -> Settled:
    """How a failed attempt settles: ``ready`` again after its backoff, or ``failed`` when the error is
    permanent or the stage's attempts are used up."""
    exc = out.error
    assert exc is not None
    values: dict[str, Any] = {
        "error_type": error_type(exc),
        "error": str(exc) or type(exc).__name__,
        "traceback": out.trace,
        "duration_ms": round(out.seconds * 1000, 3),
    }
    if not is_permanent(exc) and run.attempts < retry.max_attempts:
        values["ready_at"] = now + timedelta(seconds=retry.backoff_seconds * 2 ** (run.attempts - 1))
        return Settled(run, StageState.READY, values)
    return Settled(run, StageState.FAILED, values)


DONE_COLUMNS = (
    "output_key",
    "output_kind",
    "content_hash",
    "size",
    "result",
    "cache_key",
    "cached",
    "fingerprint",
    "logs_key",
    "duration_ms",
)
ERROR_COLUMNS = ("error_type", "error", "traceback", "duration_ms", "logs_key")


def _update_runs(
    session: Session,
    batch: str,
    state: str,
    columns: Sequence[str],
    rows: list[dict[str, Any]],
    fixed: dict[str, Any],
) -> None:
    """Settle ``rows`` (by id) into ``state``, only those still running in ``batch``."""
    if not rows:
        return
    table = StageRun.__table__
    stmt = (
        update(table)  # type: ignore[arg-type]
        .where(
            table.c.id == bindparam("b_id"), table.c.batch_id == batch, table.c.state == StageState.RUNNING
        )
        .values(state=state, **{c: bindparam(f"b_{c}") for c in columns}, **fixed)
    )
    session.execute(stmt, rows)


def settle(ctx: AppContext, batch_id: str, settled: list[Settled]) -> dict[str, str]:
    """One transaction: settle the runs, ready or skip their dependents, end finished events."""
    now = utcnow()
    by_state: dict[str, list[Settled]] = {}
    for s in settled:
        by_state.setdefault(s.state, []).append(s)

    def rows(state: str, columns: Sequence[str], extra: Sequence[str] = ()) -> list[dict[str, Any]]:
        return [
            {"b_id": s.run.id, **{f"b_{c}": s.values.get(c) for c in (*columns, *extra)}}
            for s in by_state.get(state, [])
        ]

    with ctx.uow() as session:
        # writes first: on SQLite the first write takes the database lock, so what follows reads settled data
        table = StageRun.__table__
        _update_runs(
            session,
            batch_id,
            StageState.DONE,
            DONE_COLUMNS,
            rows(StageState.DONE, DONE_COLUMNS, ("wrote",)),
            {
                "finished_at": now,
                "writes": table.c.writes + bindparam("b_wrote"),
                "force": False,
                "error": None,
                "error_type": None,
                "traceback": None,
                "archive_key": None,  # a new output is live, wherever an older one was archived
            },
        )
        _update_runs(
            session,
            batch_id,
            StageState.READY,
            (*ERROR_COLUMNS, "ready_at"),
            rows(StageState.READY, ERROR_COLUMNS, ("ready_at",)),
            {"batch_id": None},
        )
        _update_runs(
            session,
            batch_id,
            StageState.FAILED,
            ERROR_COLUMNS,
            rows(StageState.FAILED, ERROR_COLUMNS),
            {"finished_at": now},
        )
        _record_raw(session, [s for s in by_state.get(StageState.DONE, []) if s.fetched is not None], now)
        ended = [s for state in (StageState.DONE, StageState.FAILED) for s in by_state.get(state, [])]
        return advance(ctx, session, {s.run.event_id for s in settled}, now, [_stage_done(s) for s in ended])


def _stage_done(s: Settled) -> log.Append:
    """The event log's entry for a stage run that ended."""
    run = s.run
    data = {
        "event_id": run.event_id,
        "pipeline_id": run.pipeline_id,
        "stage": run.stage,
        "run_id": run.id,
        "state": str(s.state),
    }
    return log.Append("pipelines.stage.done", data, run.event_id)


def event_done(event_id: str, pipeline_id: str, state: str) -> log.Append:
    """The event log's entry for an event that ended (complete, failed or cancelled)."""
    data = {"event_id": event_id, "pipeline_id": pipeline_id, "state": str(state)}
    return log.Append("pipelines.event.done", data, event_id)


def _record_raw(session: Session, done: list[Settled], now: datetime) -> None:
    if not done:
        return
    eids = [s.run.event_id for s in done]
    seen = set(session.scalars(select(RawFetch.event_id).where(RawFetch.event_id.in_(eids))))
    new = []
    for s in done:
        f = s.fetched
        assert f is not None
        row = {
            "source": s.run.source,
            "kind": f.kind,
            "location": f.location,
            "size": f.size,
            "sha256": f.sha256,
            "content_type": f.content_type,
            "fetched_at": now,
        }
        if s.run.event_id in seen:
            session.execute(
                update(RawFetch)
                .where(RawFetch.event_id == s.run.event_id)
                .values(**row, fetches=RawFetch.fetches + 1)
            )
        else:
            new.append({"event_id": s.run.event_id, "fetches": 1, **row})
    if new:
        session.execute(insert(RawFetch), new)


def advance(
    ctx: AppContext,
    session: Session,
    event_ids: set[str],
    now: datetime,
    logged: Sequence[log.Append] = (),
) -> dict[str, str]:
    """Ready the pending runs whose inputs are all done, skip those with a failed input, and end events
    whose runs are all final; append ``logged`` and the ends to the event log (one INSERT). Returns the
    events that ended, with their state."""
    events = session.execute(
        # completions of one event's parallel stages take turns here
        Database.locking(
            select(Event.id, Event.pipeline_id, Event.version, Event.state)
            .where(Event.id.in_(event_ids))
            .order_by(Event.id)
        )
    ).all()
    states: dict[str, dict[str, str]] = {}
    failures: dict[str, tuple[str, str | None]] = {}
    for eid, stage, state, error in session.execute(
        select(StageRun.event_id, StageRun.stage, StageRun.state, StageRun.error).where(
            StageRun.event_id.in_(event_ids)
        )
    ):
        states.setdefault(eid, {})[stage] = state
        if state == StageState.FAILED:
            failures.setdefault(eid, (stage, error))
    to_ready: list[tuple[str, str]] = []
    to_skip: list[tuple[str, str]] = []
    ended: dict[str, str] = {}
    pipelines: dict[str, str] = {}
    failed_now: list[dict[str, Any]] = []
    for eid, pipeline_id, version, event_state in events:
        pipelines[eid] = pipeline_id
        if event_state == EventState.CANCELLED:
            continue
        spec = load_spec(ctx, pipeline_id, version)[1]
        runs = states.get(eid, {})
        for stage in spec.closure(None):
            if runs.get(stage) != StageState.PENDING:
                continue
            ups = [runs.get(i) for i in spec.inputs_of(stage)]
            if any(u in (StageState.FAILED, StageState.SKIPPED) for u in ups):
                runs[stage] = StageState.SKIPPED
                to_skip.append((eid, stage))
            elif all(u == StageState.DONE for u in ups):
                runs[stage] = StageState.READY
                to_ready.append((eid, stage))
        final = all(StageState(s).is_final() for s in runs.values())
        if eid in failures:
            stage, error = failures[eid]
            failed_now.append(
                {"b_id": eid, "b_stage": stage, "b_error": error, "b_end": now if final else None}
            )
            if final:
                ended[eid] = EventState.FAILED
        elif final:
            ended[eid] = EventState.COMPLETE
    _mark(session, to_ready, StageState.READY, ready_at=now)
    _mark(
        session, to_skip, StageState.SKIPPED, finished_at=now, error="an input failed", error_type="Skipped"
    )
    complete = [e for e, s in ended.items() if s == EventState.COMPLETE]
    if complete:
        session.execute(
            update(Event)
            .where(Event.id.in_(complete), Event.state != EventState.CANCELLED)
            .values(state=EventState.COMPLETE, finished_at=now)
        )
    if failed_now:
        table = Event.__table__
        session.execute(
            update(table)  # type: ignore[arg-type]
            .where(table.c.id == bindparam("b_id"), table.c.state != EventState.CANCELLED)
            .values(
                state=EventState.FAILED,
                error_stage=bindparam("b_stage"),
                error=bindparam("b_error"),
                finished_at=bindparam("b_end"),
            ),
            failed_now,
        )
    log.append_many(session, [*logged, *(event_done(e, pipelines[e], st) for e, st in ended.items())])
    return ended


def advance_events(ctx: AppContext, event_ids: set[str]) -> dict[str, str]:
    """Re-evaluate events outside a batch (the reconciler's safety net)."""
    now = utcnow()
    with ctx.uow() as session:
        Database.take(session, Event.state, Event.id.in_(event_ids))
        return advance(ctx, session, event_ids, now)


def _mark(session: Session, pairs: list[tuple[str, str]], state: str, **values: Any) -> None:
    if not pairs:
        return
    by_stage: dict[str, list[str]] = {}
    for eid, stage in pairs:
        by_stage.setdefault(stage, []).append(eid)
    for stage, eids in by_stage.items():
        session.execute(
            update(StageRun)
            .where(StageRun.event_id.in_(eids), StageRun.stage == stage, StageRun.state == StageState.PENDING)
            .values(state=state, **values)
        )
