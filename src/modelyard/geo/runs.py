"""Geo runs: what a match starts, and each run's life. ``enqueue_runs`` records queued runs (once per
model, AOI and scene) and announces each new one; a worker's ``geo.run`` workflow then takes one
(``start_run``: a new single-use token), runs its command in the sandbox (``execute``) and settles it
(``finish_run``); ``sweep_lost`` catches a run whose workflow is gone; ``cancel_run`` stops one.
"""

from __future__ import annotations

import hashlib
import secrets
import tempfile
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import func, select, tuple_, update
from sqlalchemy.orm import Session

from modelyard import db, sandbox
from modelyard.durable import log
from modelyard.errors import Conflict, ModelyardError, RunNotFound
from modelyard.geo.models import GeoRun, RunState, Scene
from modelyard.geo.run_models import GeoPrediction, RunToken
from modelyard.geo.run_schemas import RunList, RunLogs, RunPublic
from modelyard.registry import service as registry
from modelyard.registry.schemas import CommandSpec

if TYPE_CHECKING:
    from modelyard.context import AppContext
    from modelyard.settings import Settings

TOKEN_BYTES = 32
# what a run keeps of each of stdout and stderr when its spec sets no output limit (held in memory)
DEFAULT_OUTPUT_BYTES = 16 * 1024 * 1024
# how often a running command's run is looked at for a cancel
WATCH_SECONDS = 1.0

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


# -- execution ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Started:
    """A run taken by a worker for one attempt: what to run over which item, and its callback token (in
    memory only: the database keeps its hash)."""

    run_id: int
    attempt: int
    model: str
    version: int
    spec: CommandSpec
    item: dict[str, Any]
    token: str


def hash_token(token: str) -> str:
    """How a run token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def log_key(run_id: int, stream: str) -> str:
    """Where a run's ``stdout`` or ``stderr`` is kept in the artifact store."""
    return f"geo/runs/{run_id}/{stream}.log"


def callback_url(settings: Settings, run_id: int) -> str:
    """The URL a run reports its results to."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    base = (settings.run_callback_base_url or f"http://{host}:{settings.port}").rstrip("/")
    return f"{base}/api/v1/runs/{run_id}/results"


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


def _end(session: Session, run: GeoRun, state: RunState, error: str | None) -> None:
    """Set a run's final state and expire its token (a late report is a 410), announcing it."""
    now = db.utcnow()
    run.state, run.error, run.finished_at = state, error, now
    session.execute(
        update(RunToken).where(RunToken.run_id == run.id, RunToken.used_at.is_(None)).values(expires_at=now)
    )
    session.flush()
    topic = {RunState.SUCCEEDED: "geo.run.succeeded", RunState.CANCELLED: "geo.run.cancelled"}
    announce(session, topic.get(state, "geo.run.failed"), run, error=error)


def start_run(ctx: AppContext, run_id: int, claim_id: str) -> Started | None:
    """Take run ``run_id`` (claimed as ``claim_id``) for its next attempt: running, a new token, announced
    as ``geo.run.started``. None when there is nothing to run: cancelled meanwhile, its model gone or not
    a command (failed), or a run whose worker died mid-run ``geo_run_max_attempts`` times (failed)."""
    with ctx.uow() as session:
        run = session.get(GeoRun, run_id, with_for_update=True)
        if run is None or run.claimed_by != claim_id or run.state not in (RunState.QUEUED, RunState.RUNNING):
            return None
        if run.state == RunState.RUNNING and run.attempts >= ctx.settings.geo_run_max_attempts:
            _end(session, run, RunState.FAILED, _gave_up(run.attempts))
            return None
        try:
            model, version = registry.resolve_version(session=session, name=run.model)
            registry.require_kind(model, "command", "a geo run")
        except ModelyardError as exc:
            _end(session, run, RunState.FAILED, exc.detail)
            return None
        spec = CommandSpec.model_validate(version.command)
        scene = session.get_one(Scene, run.scene_id)
        now, token = db.utcnow(), secrets.token_urlsafe(TOKEN_BYTES)
        run.state, run.attempts, run.started_at = RunState.RUNNING, run.attempts + 1, now
        run.model_version, run.error, run.finished_at = version.version, None, None
        expires = now + timedelta(seconds=spec.timeout_seconds + ctx.settings.geo_run_token_grace_seconds)
        session.merge(
            RunToken(
                run_id=run.id,
                token_hash=hash_token(token),
                attempt=run.attempts,
                expires_at=expires,
                used_at=None,
            )
        )
        session.flush()
        announce(session, "geo.run.started", run)
        return Started(run.id, run.attempts, run.model, version.version, spec, dict(scene.item), token)


def _watch(ctx: AppContext, started: Started, stop: threading.Event, done: threading.Event) -> None:
    """Set ``stop`` once the run is no longer this attempt's (cancelled): its command is then killed."""
    while not done.wait(WATCH_SECONDS):
        try:
            with ctx.uow() as session:
                row = session.execute(
                    select(GeoRun.state, GeoRun.attempts).where(GeoRun.id == started.run_id)
                ).one_or_none()
        except Exception:  # a database hiccup is not a reason to kill the command
            continue
        if row is None or row.state != RunState.RUNNING or row.attempts != started.attempt:
            stop.set()
            return


def execute(ctx: AppContext, started: Started) -> sandbox.Finished:
    """Run the command over a local copy of the scene's item (its path the last argument), in the
    sandbox, its stdout and stderr kept in the artifact store; killed if the run is cancelled."""
    spec = started.spec
    env = sandbox.scrubbed_env(
        {
            **spec.env,
            "MODELYARD_CALLBACK_URL": callback_url(ctx.settings, started.run_id),
            "MODELYARD_RUN_TOKEN": started.token,
            "MODELYARD_RUN_ID": str(started.run_id),
        }
    )
    limits = sandbox.Limits(
        cpu_seconds=spec.limits.cpu_seconds,
        memory_mb=spec.limits.memory_mb,
        output_bytes=spec.limits.output_bytes or DEFAULT_OUTPUT_BYTES,
    )
    stop, finished = threading.Event(), threading.Event()
    watcher = threading.Thread(target=_watch, args=(ctx, started, stop, finished), daemon=True)
    watcher.start()
    try:
        with tempfile.TemporaryDirectory(prefix="modelyard-run-") as tmp:
            path = Path(tmp) / "item.json"
            path.write_bytes(orjson.dumps(started.item))
            done = sandbox.run(
                [*spec.argv, str(path)],
                cwd=Path(tmp),
                env=env,
                timeout=spec.timeout_seconds,
                limits=limits,
                stop=stop,
            )
    finally:
        finished.set()
    ctx.storage.put_many(
        [(log_key(started.run_id, "stdout"), done.stdout), (log_key(started.run_id, "stderr"), done.stderr)]
    )
    return done


def finish_run(ctx: AppContext, started: Started, done: sandbox.Finished) -> str | None:
    """Settle this attempt after its command ended: succeeded if it exited 0 having reported results,
    else failed with the reason. Returns the final state (None if the run was cancelled meanwhile)."""
    name = Path(started.spec.argv[0]).name
    with ctx.uow() as session:
        run = session.get(GeoRun, started.run_id, with_for_update=True)
        if run is None or run.state != RunState.RUNNING or run.attempts != started.attempt:
            return None
        reported = session.scalar(select(GeoPrediction.id).where(GeoPrediction.run_id == run.id))
        if done.ok and reported is not None:
            _end(session, run, RunState.SUCCEEDED, None)
        elif done.ok:
            _end(
                session, run, RunState.FAILED, f"{name} exited without reporting results to its callback URL"
            )
        else:
            _end(session, run, RunState.FAILED, done.reason(name))
        return str(run.state)


def fail_run(ctx: AppContext, run_id: int, attempt: int, reason: str) -> None:
    """Fail this attempt of a run for a reason of the system's (it is not left running)."""
    with ctx.uow() as session:
        run = session.get(GeoRun, run_id, with_for_update=True)
        if run is not None and run.state == RunState.RUNNING and run.attempts == attempt:
            _end(session, run, RunState.FAILED, reason)


def sweep_lost(ctx: AppContext) -> int:
    """Runs left running by a workflow that has ended or no longer exists (its worker's recovery cannot
    bring it back): queued again while attempts remain, else failed with the reason. How many."""
    cutoff = db.utcnow() - timedelta(seconds=ctx.settings.geo_run_claim_timeout_seconds)
    with ctx.uow() as session:
        rows = session.execute(
            select(GeoRun.id, GeoRun.claimed_by)
            .where(GeoRun.state == RunState.RUNNING, GeoRun.started_at < cutoff)
            .limit(200)
        ).all()
    claims = [str(c) for _, c in rows if c is not None]
    if not claims:
        return 0
    states = ctx.dispatcher.get().statuses(claims)
    lost = [i for i, c in rows if c is None or c not in states or states[c].is_final()]
    for run_id in lost:
        with ctx.uow() as session:
            run = session.get(GeoRun, run_id, with_for_update=True)
            if run is None or run.state != RunState.RUNNING:
                continue
            if run.attempts < ctx.settings.geo_run_max_attempts:
                run.state, run.claimed_by, run.claimed_at = RunState.QUEUED, None, None
                run.error = f"attempt {run.attempts}: its worker stopped mid-run; queued again"
            else:
                _end(session, run, RunState.FAILED, _gave_up(run.attempts))
    return len(lost)


def _gave_up(attempts: int) -> str:
    return f"its worker stopped mid-run {attempts} times; gave up"


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
    """What the run's last attempt wrote (empty before its command has ended)."""
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
        _end(session, run, RunState.CANCELLED, "cancelled")
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
