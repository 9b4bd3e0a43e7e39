"""Running one claimed batch of stage runs (one stage, many events) and settling it.

``run_batch`` is what the batch workflow's step calls. It may run more than once for a batch (a worker
killed mid-step has its workflow recovered elsewhere), so everything it does is keyed: outputs go to
``pipelines/{pipeline}/{stage}/{event_id}.{ext}`` and an identical object already there is not written
again; runs are settled only while still ``running`` in this batch, in one transaction that also makes
their dependents ready and ends events whose last stage finished.

Unchanged inputs of an unchanged stage are served from the content-hash cache: a run's cache key hashes
the stage's fingerprint, the model version it resolved to, its inputs' content hashes and the event's
parameters; a done run with the same key gives its output.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from modelyard.context import AppContext
from modelyard.db import utcnow
from modelyard.errors import NotFound
from modelyard.fetch import is_permanent
from modelyard.pipelines import outputs, raw, settle
from modelyard.pipelines.models import Event, EventState, RawFetch, StageRun, StageState
from modelyard.pipelines.service import load_spec, wake
from modelyard.pipelines.settle import Claimed, Settled
from modelyard.pipelines.spec import RAW, PipelineSpec, StageSpec
from modelyard.pipelines.stages import Item, Outcome, StageEnv, run_stage
from modelyard.serving.service import InferenceService
from modelyard.storage import Storage

log = logging.getLogger("modelyard.pipelines")
ENV = "pipelines.stage_env"
IO_POOL = "pipelines.io_pool"


def stage_env(ctx: AppContext) -> StageEnv:
    """This process's stage environment (imported callables are kept)."""
    env: StageEnv | None = ctx.extras.get(ENV)
    if env is None:
        env = ctx.extras[ENV] = StageEnv(inference=ctx.inference)
    return env


def io_pool(ctx: AppContext) -> ThreadPoolExecutor:
    """Threads for artifact writes and URL fetches of batches in this process."""
    pool: ThreadPoolExecutor | None = ctx.extras.get(IO_POOL)
    if pool is None:
        pool = ctx.extras[IO_POOL] = ThreadPoolExecutor(
            max_workers=ctx.settings.pipeline_fetch_threads, thread_name_prefix="pipelines-io"
        )
    return pool


def run_batch(ctx: AppContext, batch_id: str) -> dict[str, int]:
    """Run every still-running stage run of ``batch_id``, write their outputs and settle them."""
    claimed = _start(ctx, batch_id)
    if not claimed:
        return {"runs": 0}
    groups: dict[tuple[str, int], list[Claimed]] = {}
    for run in claimed:
        groups.setdefault((run.pipeline_id, run.version), []).append(run)
    settled: list[Settled] = []
    for (pipeline_id, version), runs in groups.items():
        name, spec = load_spec(ctx, pipeline_id, version)
        if runs[0].stage == RAW:
            settled += _run_raw(ctx, spec, runs)
        else:
            settled += _run_stage(ctx, name, spec, spec.stages[runs[0].stage], runs)
    events = settle.settle(ctx, batch_id, settled)
    wake(ctx)
    counts = {"runs": len(settled)}
    for s in settled:
        counts[str(s.state)] = counts.get(str(s.state), 0) + 1
    for event_id, state in events.items():
        ctx.bus.publish(f"pipelines.event.{state}", {"event": event_id, "state": state})
    return counts


def _start(ctx: AppContext, batch_id: str) -> list[Claimed]:
    now = utcnow()
    with ctx.uow() as session:
        # a write first: on SQLite it takes the write lock before reading (no read-then-write upgrade)
        session.execute(
            update(StageRun)
            .where(StageRun.batch_id == batch_id, StageRun.state == StageState.RUNNING)
            .values(started_at=now, attempts=StageRun.attempts + 1)
        )
        rows = session.execute(
            select(
                StageRun.id,
                StageRun.event_id,
                StageRun.stage,
                StageRun.attempts,
                StageRun.force,
                Event.name,
                Event.params,
                Event.source,
                Event.version,
                Event.pipeline_id,
                StageRun.output_key,
                StageRun.logs_key,
            )
            .join(Event, Event.id == StageRun.event_id)
            .where(StageRun.batch_id == batch_id, StageRun.state == StageState.RUNNING)
            .order_by(StageRun.id)
        ).all()
        claimed = [Claimed(*row) for row in rows]
        if claimed:
            session.execute(
                update(Event)
                .where(Event.id.in_({c.event_id for c in claimed}), Event.state == EventState.PENDING)
                .values(state=EventState.RUNNING, started_at=now)
            )
    return claimed


# -- failures and retries ----------------------------------------------------------------------------


def _failure(run: Claimed, out: Outcome, limits_attempts: int, backoff: float, now: datetime) -> Settled:
    exc = out.error
    assert exc is not None
    values: dict[str, Any] = {
        "error_type": type(exc).__name__,
        "error": str(exc) or type(exc).__name__,
        "traceback": out.trace,
        "duration_ms": round(out.seconds * 1000, 3),
    }
    if not is_permanent(exc) and run.attempts < limits_attempts:
        values["ready_at"] = now + timedelta(seconds=backoff * 2 ** (run.attempts - 1))
        return Settled(run, StageState.READY, values)
    return Settled(run, StageState.FAILED, values)


# -- the raw stage -----------------------------------------------------------------------------------


def _run_raw(ctx: AppContext, spec: PipelineSpec, runs: list[Claimed]) -> list[Settled]:
    def one(run: Claimed) -> Outcome:
        import time
        import traceback

        start = time.perf_counter()
        try:
            got = raw.fetch(ctx, run.event_id, run.source, spec.raw_type)
            return Outcome(value=got, seconds=time.perf_counter() - start)
        except Exception as exc:
            return Outcome(error=exc, trace=traceback.format_exc(), seconds=time.perf_counter() - start)

    remote = sum(r.source.startswith(("http://", "https://")) for r in runs)
    results = list(io_pool(ctx).map(one, runs)) if remote > 1 else [one(r) for r in runs]
    now = utcnow()
    limits = spec.raw_limits
    settled = []
    for run, out in zip(runs, results, strict=True):
        if out.error is not None:
            settled.append(_failure(run, out, limits.retry.max_attempts, limits.retry.backoff_seconds, now))
            continue
        got: raw.Fetched = out.value
        values = {
            "output_key": got.location,
            "output_kind": "bytes",
            "content_hash": got.sha256,
            "size": got.size,
            "result": None,
            "cache_key": None,
            "cached": False,
            "fingerprint": None,
            "logs_key": None,
            "duration_ms": round(out.seconds * 1000, 3),
            "wrote": 1,
        }
        settled.append(Settled(run, StageState.DONE, values, fetched=got))
    return settled


# -- a stage -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Upstream:
    kind: str | None
    key: str | None
    result: Any
    content_hash: str | None
    archived: bool


def _upstream(
    session: Session, runs: Sequence[Claimed], inputs: Sequence[str]
) -> tuple[dict[tuple[str, str], _Upstream], dict[str, RawFetch]]:
    eids = [r.event_id for r in runs]
    found: dict[tuple[str, str], _Upstream] = {}
    others = [i for i in inputs if i != RAW]
    if others:
        for eid, stage, kind, key, result, digest, archived in session.execute(
            select(
                StageRun.event_id,
                StageRun.stage,
                StageRun.output_kind,
                StageRun.output_key,
                StageRun.result,
                StageRun.content_hash,
                StageRun.archive_key,
            ).where(StageRun.event_id.in_(eids), StageRun.stage.in_(others))
        ):
            found[(eid, stage)] = _Upstream(kind, key, result, digest, archived is not None)
    fetched: dict[str, RawFetch] = {}
    if RAW in inputs:
        fetched = {
            f.event_id: f for f in session.scalars(select(RawFetch).where(RawFetch.event_id.in_(eids)))
        }
    return found, fetched


def _cache_key(stage: StageSpec, resolved: str, hashes: list[str], params: dict[str, Any]) -> str:
    body = orjson.dumps([stage.fingerprint(), resolved, hashes, params], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(body).hexdigest()


def _resolve(stage: StageSpec, inference: InferenceService) -> str:
    """The model version a stage would run now (part of its cache key), or '' for model-less stages."""
    if stage.kind == "model":
        name, version = stage.config["model"], stage.config.get("model_version", "latest")
    elif stage.kind == "inferrer" and "model" in stage.params:
        name, version = stage.params["model"], stage.params.get("model_version", "latest")
    else:
        return ""
    ref = inference.resolve_sync(name, version)
    return f"{ref.name}@{ref.version}"


def _run_stage(
    ctx: AppContext, pipeline: str, spec: PipelineSpec, stage: StageSpec, runs: list[Claimed]
) -> list[Settled]:
    import traceback

    now = utcnow()
    retry = stage.limits.retry
    try:
        resolved = _resolve(stage, ctx.inference)
    except Exception as exc:
        out = Outcome(error=exc, trace=traceback.format_exc())
        return [_failure(r, out, retry.max_attempts, retry.backoff_seconds, now) for r in runs]
    with ctx.uow() as session:
        upstream, fetched = _upstream(session, runs, stage.inputs)
    keys: dict[int, str] = {}
    missing: dict[int, str] = {}
    for run in runs:
        hashes = []
        for name in stage.inputs:
            digest = fetched[run.event_id].sha256 if name == RAW and run.event_id in fetched else None
            if name != RAW:
                up = upstream.get((run.event_id, name))
                digest = up.content_hash if up is not None and not up.archived else None
            if digest is None:
                missing[run.id] = name
                break
            hashes.append(digest)
        else:
            keys[run.id] = _cache_key(stage, resolved, hashes, run.params)
    hits = _cache_hits(
        ctx, runs[0].pipeline_id, stage, [k for r in runs if (k := keys.get(r.id)) and not r.force]
    )
    settled: list[Settled] = []
    todo: list[Claimed] = []
    for run in runs:
        if run.id in missing:
            err = NotFound(f"the output of {missing[run.id]} for this event is missing or archived")
            settled.append(_failure(run, Outcome(error=err), retry.max_attempts, retry.backoff_seconds, now))
        elif stage.cache and not run.force and keys[run.id] in hits:
            settled.append(_from_cache(ctx, pipeline, stage, run, hits[keys[run.id]], keys[run.id]))
        else:
            todo.append(run)
    if todo:
        settled += _execute(ctx, pipeline, stage, todo, upstream, fetched, keys, resolved)
    return settled


def _cache_hits(ctx: AppContext, pipeline_id: str, stage: StageSpec, keys: list[str]) -> dict[str, Any]:
    if not stage.cache or not keys:
        return {}
    with ctx.uow() as session:
        rows = session.execute(
            select(
                StageRun.cache_key,
                StageRun.output_key,
                StageRun.output_kind,
                StageRun.content_hash,
                StageRun.size,
                StageRun.result,
            ).where(
                StageRun.pipeline_id == pipeline_id,
                StageRun.stage == stage.name,
                StageRun.cache_key.in_(set(keys)),
                StageRun.content_hash.is_not(None),
                StageRun.output_key.is_not(None),
                StageRun.archive_key.is_(None),
            )
        ).all()
    return {row[0]: row for row in rows}


def _from_cache(
    ctx: AppContext, pipeline: str, stage: StageSpec, run: Claimed, hit: Any, key: str
) -> Settled:
    _, source_key, kind, digest, size, result = hit
    ext = source_key.rsplit(".", 1)[-1]
    target = outputs.output_key(pipeline, stage.name, run.event_id, ext)
    if target != source_key and not _same(ctx.storage, target, digest, size):
        ctx.storage.copy(source_key, target)
    values = {
        "output_key": target,
        "output_kind": kind,
        "content_hash": digest,
        "size": size,
        "result": result,
        "cache_key": key,
        "cached": True,
        "fingerprint": stage.fingerprint(),
        "logs_key": None,
        "duration_ms": 0.0,
        "wrote": 0,
    }
    return Settled(run, StageState.DONE, values)


def _same(storage: Storage, key: str, digest: str, size: int | None) -> bool:
    """Whether ``key`` already holds exactly this content (a repeated step need not write it again)."""
    try:
        info = storage.stat(key)
    except NotFound:
        return False
    if size is not None and info.size != size:
        return False
    known = info.sha256 or hashlib.sha256(storage.get_bytes(key)).hexdigest()
    return known == digest


def _inputs(
    ctx: AppContext,
    stage: StageSpec,
    run: Claimed,
    upstream: dict[tuple[str, str], _Upstream],
    fetched: dict[str, RawFetch],
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in stage.inputs:
        if name == RAW:
            f = fetched[run.event_id]
            values[name] = raw.read(ctx, run.event_id, f.kind, f.location)
            continue
        up = upstream[(run.event_id, name)]
        assert up.kind is not None and up.key is not None
        if up.kind == "json" and up.result is not None:
            values[name] = up.result
        else:
            values[name] = outputs.decode(up.kind, ctx.storage.get_bytes(up.key))
    return values


def _execute(
    ctx: AppContext,
    pipeline: str,
    stage: StageSpec,
    runs: list[Claimed],
    upstream: dict[tuple[str, str], _Upstream],
    fetched: dict[str, RawFetch],
    keys: dict[int, str],
    resolved: str,
) -> list[Settled]:
    import traceback

    retry = stage.limits.retry
    items: list[Item] = []
    ready: list[Claimed] = []
    settled: list[Settled] = []
    for run in runs:
        try:
            items.append(
                Item(run.event_id, run.event, run.params, _inputs(ctx, stage, run, upstream, fetched))
            )
            ready.append(run)
        except Exception as exc:
            out = Outcome(error=exc, trace=traceback.format_exc())
            settled.append(_failure(run, out, retry.max_attempts, retry.backoff_seconds, utcnow()))
    results, _ = run_stage(stage, items, stage_env(ctx)) if items else ([], "")
    now = utcnow()
    jobs = [(run, out) for run, out in zip(ready, results, strict=True)]
    written = (
        list(io_pool(ctx).map(lambda j: _write(ctx, pipeline, stage, j[0], j[1]), jobs))
        if len(jobs) > 8
        else [_write(ctx, pipeline, stage, run, out) for run, out in jobs]
    )
    for (run, out), write in zip(jobs, written, strict=True):
        if write.error is not None:
            failure = _failure(run, write, retry.max_attempts, retry.backoff_seconds, now)
            failure.values["logs_key"] = (write.value or {}).get("logs_key")
            settled.append(failure)
            continue
        values = dict(write.value)
        values |= {
            "cache_key": keys.get(run.id),
            "cached": False,
            "fingerprint": stage.fingerprint(),
            "duration_ms": round(out.seconds * 1000, 3),
            "wrote": 1,
        }
        settled.append(Settled(run, StageState.DONE, values))
    return settled


def _write(ctx: AppContext, pipeline: str, stage: StageSpec, run: Claimed, out: Outcome) -> Outcome:
    """Store one run's output and logs; the outcome's value becomes the row values (or its error stays)."""
    import traceback

    logs_key = None
    try:
        if out.logs or out.error is not None:
            logs_key = outputs.logs_key(pipeline, stage.name, run.event_id)
            ctx.storage.put_bytes(logs_key, (out.logs or "").encode())
        elif run.previous_logs:
            ctx.storage.delete(run.previous_logs)
        if out.error is not None:
            return Outcome(
                error=out.error, trace=out.trace, seconds=out.seconds, value={"logs_key": logs_key}
            )
        enc = outputs.encode(out.value, stage.produces, inline_bytes=ctx.settings.pipeline_inline_bytes)
        key = outputs.output_key(pipeline, stage.name, run.event_id, enc.ext)
        if not _same(ctx.storage, key, enc.sha256, len(enc.data)):
            ctx.storage.put_bytes(key, enc.data)
        if run.previous_key and run.previous_key != key:
            ctx.storage.delete(run.previous_key)
    except Exception as exc:
        return Outcome(error=exc, trace=traceback.format_exc(), seconds=out.seconds)
    return Outcome(
        value={
            "output_key": key,
            "output_kind": enc.kind,
            "content_hash": enc.sha256,
            "size": len(enc.data),
            "result": enc.inline,
            "logs_key": logs_key,
        }
    )


def close(ctx: AppContext) -> None:
    """Release what pipelines hold in this process: I/O threads, the URL client, the raw data cache."""
    from modelyard.fetch import close_client

    pool = ctx.extras.pop(IO_POOL, None)
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)
    close_client(ctx)
    raw.close(ctx)
