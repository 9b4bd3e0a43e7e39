"""Running a geo run, attempt by attempt, as a worker's ``geo.run`` workflow does: ``start_run`` (a new
single-use token, stored hashed, expiring at the command's timeout plus ``geo_run_token_grace_seconds``),
``execute`` (the command in ``modelyard.sandbox``, the item's path its last argument, with
``MODELYARD_CALLBACK_URL``, ``MODELYARD_RUN_TOKEN`` and ``MODELYARD_RUN_ID`` in a scrubbed environment;
stdout and stderr kept in the artifact store), ``finish_run``; ``sweep_lost`` catches a run whose
workflow is gone.
"""

from __future__ import annotations

import secrets
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import select

from modelyard import db, sandbox
from modelyard.errors import ModelyardError
from modelyard.geo.models import GeoRun, RunState, Scene
from modelyard.geo.run_models import GeoPrediction, RunToken
from modelyard.geo.runs import announce, end_run, hash_token, log_key
from modelyard.registry import service as registry
from modelyard.registry.schemas import CommandSpec

if TYPE_CHECKING:
    from modelyard.context import AppContext
    from modelyard.settings import Settings

TOKEN_BYTES = 32
# what a run keeps of each of stdout and stderr when its spec sets no output limit (held in memory)
DEFAULT_OUTPUT_BYTES = 16 * 1024 * 1024
# how often a running command's output so far is stored (``GET /api/v1/runs/{id}/logs`` while it runs)
LOG_EVERY_SECONDS = 2.0
# how often a running command's run is looked at for a cancel
WATCH_SECONDS = 1.0


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
    token: str = field(repr=False)  # never in a log line


def callback_url(settings: Settings, run_id: int) -> str:
    """The URL a run reports its results to."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    base = (settings.run_callback_base_url or f"http://{host}:{settings.port}").rstrip("/")
    return f"{base}/api/v1/runs/{run_id}/results"


def start_run(ctx: AppContext, run_id: int, claim_id: str) -> Started | None:
    """Take run ``run_id`` (claimed as ``claim_id``) for its next attempt: running, a new token, announced
    as ``geo.run.started``. None when there is nothing to run: cancelled meanwhile, its model gone or not
    a command (failed), or a run whose worker died mid-run ``geo_run_max_attempts`` times (failed)."""
    with ctx.uow() as session:
        run = session.get(GeoRun, run_id, with_for_update=True)
        if run is None or run.claimed_by != claim_id or run.state not in (RunState.QUEUED, RunState.RUNNING):
            return None
        if run.state == RunState.RUNNING and run.attempts >= ctx.settings.geo_run_max_attempts:
            end_run(session, run, RunState.FAILED, _gave_up(run.attempts))
            return None
        try:
            model, version = registry.resolve_version(session=session, name=run.model)
            registry.require_kind(model, "command", "a geo run")
        except ModelyardError as exc:
            end_run(session, run, RunState.FAILED, exc.detail)
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
                progress=lambda out, err: _keep_logs(ctx, started.run_id, out, err),
                progress_seconds=LOG_EVERY_SECONDS,
            )
    finally:
        finished.set()
    _keep_logs(ctx, started.run_id, done.stdout, done.stderr)
    return done


def _keep_logs(ctx: AppContext, run_id: int, stdout: bytes, stderr: bytes) -> None:
    """Store what the command wrote so far (its logs are viewable while it runs)."""
    ctx.storage.put_many([(log_key(run_id, "stdout"), stdout), (log_key(run_id, "stderr"), stderr)])


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
            end_run(session, run, RunState.SUCCEEDED, None)
        elif done.ok:
            end_run(
                session, run, RunState.FAILED, f"{name} exited without reporting results to its callback URL"
            )
        else:
            end_run(session, run, RunState.FAILED, done.reason(name))
        return str(run.state)


def fail_run(ctx: AppContext, run_id: int, attempt: int, reason: str) -> None:
    """Fail this attempt of a run for a reason of the system's (it is not left running)."""
    with ctx.uow() as session:
        run = session.get(GeoRun, run_id, with_for_update=True)
        if run is not None and run.state == RunState.RUNNING and run.attempts == attempt:
            end_run(session, run, RunState.FAILED, reason)


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
                end_run(session, run, RunState.FAILED, _gave_up(run.attempts))
    return len(lost)


def _gave_up(attempts: int) -> str:
    return f"its worker stopped mid-run {attempts} times; gave up"
