"""Geo runs: what a match starts. ``enqueue_runs`` records queued runs (once per model, AOI and scene)
and announces each new one; ``end_run`` settles one (announced, its token expired); reads, ``cancel_run``
and ``retry_run``. Running one is ``geo.execution``'s."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.orm import Session

from modelyard import db
from modelyard.durable import log
from modelyard.errors import Conflict, RunNotFound
from modelyard.geo.models import GeoRun, RunState
from modelyard.geo.run_models import GeoPrediction, RunToken
from modelyard.geo.run_schemas import RunList, RunLogs, RunPublic

if TYPE_CHECKING:
    from modelyard.context import AppContext

Key = tuple[str, int, int]  # (model, AOI id, scene id)


def enqueue_runs(session: Session, matches: list[Key]) -> list[tuple[int, bool]]:
    """Queue a run for each (model, AOI id, scene id) in ``session``'s transaction, skipping any that
    exists (posting the same scene twice never starts a second run); returns (run id, whether new) per
    match, in order. Each new run is announced as ``geo.run.queued`` (subject: the model)."""
    if not matches:
        return []
    now = db.utcnow()
    rows = [
        {"model": m, "aoi_id": a, "scene_id": s, "state": RunState.QUEUED, "attempts": 0, "created_at": now}
        for m, a, s in dict.fromkeys(matches)
    ]
    inserted = db.insert_new_returning(
        session, GeoRun.__table__, rows, GeoRun.id, GeoRun.model, GeoRun.aoi_id, GeoRun.scene_id
    )
    new: dict[Key, int] = {(m, a, s): i for i, m, a, s in inserted}
    log.append_many(
        session,
        [
            log.Append("geo.run.queued", {"run_id": i, "model": k[0], "aoi_id": k[1], "scene_id": k[2]}, k[0])
            for k, i in sorted(new.items(), key=lambda kv: kv[1])
        ],
    )
    ids = {**_ids(session, [k for k in dict.fromkeys(matches) if k not in new]), **new}
    return [(ids[k], k in new) for k in matches]


def _ids(session: Session, keys: list[Key]) -> dict[Key, int]:
    found: dict[Key, int] = {}
    for start in range(0, len(keys), 300):
        chunk = keys[start : start + 300]
        rows = session.execute(
            select(GeoRun.model, GeoRun.aoi_id, GeoRun.scene_id, GeoRun.id).where(
                tuple_(GeoRun.model, GeoRun.aoi_id, GeoRun.scene_id).in_(chunk)
            )
        )
        found.update({(m, a, s): i for m, a, s, i in rows})
    return found


def hash_token(token: str) -> str:
    """How a run token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def log_key(run_id: int, stream: str) -> str:
    """Where a run's ``stdout`` or ``stderr`` is kept in the artifact store."""
    return f"geo/runs/{run_id}/{stream}.log"


def announce(session: Session, topic: str, run: GeoRun, **extra: Any) -> None:
    """Append ``topic`` about ``run`` to the event log (subject: the model), in ``session``'s transaction."""
    data = {
        "run_id": run.id,
        "model": run.model,
        "model_version": run.model_version,
        "aoi_id": run.aoi_id,
        "scene_id": run.scene_id,
        "state": run.state,
        "attempt": run.attempts,
        **extra,
    }
    log.append(session, topic, data, run.model)


def end_run(session: Session, run: GeoRun, state: RunState, error: str | None) -> None:
    """Set a run's final state and expire its token (a late report is a 410), announcing it."""
    now = db.utcnow()
    run.state, run.error, run.finished_at = state, error, now
    session.execute(
        update(RunToken).where(RunToken.run_id == run.id, RunToken.used_at.is_(None)).values(expires_at=now)
    )
    session.flush()
    topic = {RunState.SUCCEEDED: "geo.run.succeeded", RunState.CANCELLED: "geo.run.cancelled"}
    announce(session, topic.get(state, "geo.run.failed"), run, error=error)


# -- reads and cancel --------------------------------------------------------------------------------


def _public(run: GeoRun, prediction_id: int | None) -> RunPublic:
    return RunPublic(
        id=run.id,
        model=run.model,
        model_version=run.model_version,
        aoi_id=run.aoi_id,
        scene_id=run.scene_id,
        state=run.state,
        attempts=run.attempts,
        error=run.error,
        prediction_id=prediction_id,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
    )


def _load(session: Session, run_id: int) -> GeoRun:
    run = session.get(GeoRun, run_id)
    if run is None:
        raise RunNotFound(run_id)
    return run


def get_run(ctx: AppContext, run_id: int) -> RunPublic:
    """One run, ``RunNotFound`` if none."""
    with ctx.uow() as session:
        run = _load(session, run_id)
        found = session.scalar(select(GeoPrediction.id).where(GeoPrediction.run_id == run_id))
        return _public(run, found)


def list_runs(
    ctx: AppContext,
    *,
    model: str | None = None,
    aoi_id: int | None = None,
    scene_id: int | None = None,
    state: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> RunList:
    """Runs newest first, filtered by model, AOI, scene and state."""
    where = [
        c
        for c, v in (
            (GeoRun.model == model, model),
            (GeoRun.aoi_id == aoi_id, aoi_id),
            (GeoRun.scene_id == scene_id, scene_id),
            (GeoRun.state == state, state),
        )
        if v is not None
    ]
    with ctx.uow() as session:
        total = session.scalar(select(func.count()).select_from(GeoRun).where(*where)) or 0
        rows = session.execute(
            select(GeoRun, GeoPrediction.id)
            .outerjoin(GeoPrediction, GeoPrediction.run_id == GeoRun.id)
            .where(*where)
            .order_by(GeoRun.id.desc())
            .offset(offset)
            .limit(limit)
        ).all()
        return RunList(items=[_public(r, p) for r, p in rows], total=total)


def run_logs(ctx: AppContext, run_id: int) -> RunLogs:
    """What the run's last attempt wrote (while it runs: up to a couple of seconds ago)."""
    with ctx.uow() as session:
        _load(session, run_id)
    texts = {}
    for stream in ("stdout", "stderr"):
        key = log_key(run_id, stream)
        texts[stream] = ctx.storage.get_bytes(key).decode(errors="replace") if ctx.storage.exists(key) else ""
    return RunLogs(run_id=run_id, stdout=texts["stdout"], stderr=texts["stderr"])


def cancel_run(ctx: AppContext, run_id: int) -> RunPublic:
    """Cancel a queued or running run (a running command is killed within a second or so); 409 if it
    has already ended."""
    with ctx.uow() as session:
        run = session.get(GeoRun, run_id, with_for_update=True)
        if run is None:
            raise RunNotFound(run_id)
        if RunState(run.state).is_final():
            raise Conflict(f"run {run_id} has already ended ({run.state})", field="run_id")
        end_run(session, run, RunState.CANCELLED, "cancelled")
    return get_run(ctx, run_id)


def retry_run(ctx: AppContext, run_id: int) -> RunPublic:
    """Queue a failed or cancelled run again (its attempts start over); 409 otherwise."""
    with ctx.uow() as session:
        run = session.get(GeoRun, run_id, with_for_update=True)
        if run is None:
            raise RunNotFound(run_id)
        if run.state not in (RunState.FAILED, RunState.CANCELLED):
            raise Conflict(f"run {run_id} is {run.state}; only a failed or cancelled run is retried")
        run.state, run.attempts, run.claimed_by, run.claimed_at = RunState.QUEUED, 0, None, None
        run.finished_at = None
        session.flush()
        announce(session, "geo.run.queued", run, retry=True)
    return get_run(ctx, run_id)
