"""Running one claimed batch of stage runs (one stage, many events) and settling it.

``run_batch`` is what the batch workflow's step calls. It may run more than once for a batch (a worker
killed mid-step has its workflow recovered elsewhere), so everything it does is keyed: outputs go to
``pipelines/{pipeline}/{stage}/{event_id}.{ext}`` and an identical object already there is not written
again (``store``); runs are settled only while still ``running`` in this batch, in one transaction that
also makes their dependents ready and ends events whose last stage finished (``settle``). Unchanged
inputs of an unchanged stage are served from the content-hash cache (``cache``).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import select, update

from modelyard.context import AppContext
from modelyard.db import utcnow
from modelyard.errors import NotFound
from modelyard.pipelines.models import Event, EventState, RawFetch, StageRun, StageState
from modelyard.pipelines.run import removal, settle, store, upstream
from modelyard.pipelines.run.settle import Claimed, Settled, failure
from modelyard.pipelines.service import load_spec, wake
from modelyard.pipelines.spec import RAW, PipelineSpec, StageSpec
from modelyard.pipelines.spec.kinds import stage_kind
from modelyard.pipelines.stages import Item, Outcome, StageEnv, cache, raw
from modelyard.pipelines.stages.batch import run_stage

log = logging.getLogger("modelyard.pipelines")


def stage_env(ctx: AppContext) -> StageEnv:
    """This process's stage environment (imported callables are kept)."""
    return ctx.stage_env.get()


def io_pool(ctx: AppContext) -> ThreadPoolExecutor:
    """Threads for the URL fetches of raw batches in this process (stage outputs go out in one put_many)."""
    return ctx.io_pool.get()


def run_batch(ctx: AppContext, batch_id: str) -> dict[str, int]:
    """Run every still-running stage run of ``batch_id``, write their outputs and settle them."""
    claimed = _start(ctx, batch_id)
    if not claimed:
        return {"runs": 0}
    groups: dict[tuple[str, int], list[Claimed]] = {}
    for run in claimed:
        groups.setdefault((run.pipeline_id, run.version), []).append(run)
    settled: list[Settled] = []
    names: dict[str, str] = {}
    for (pipeline_id, version), runs in groups.items():
        name, spec = load_spec(ctx, pipeline_id, version)
        names[pipeline_id] = name
        if runs[0].stage == RAW:
            settled += _run_raw(ctx, spec, runs)
        else:
            settled += _run_stage(ctx, name, spec, spec.stages[runs[0].stage], runs)
    events = settle.settle(ctx, batch_id, settled)
    wake(ctx)
    removal.discard_orphans(ctx, settled)
    _observe(ctx, names, settled)
    counts = {"runs": len(settled)}
    for s in settled:
        counts[str(s.state)] = counts.get(str(s.state), 0) + 1
    # the event log has it all; this wakes this process's event streams without waiting for their poll
    ctx.bus.publish("pipelines.batch.settled", {"batch": batch_id, "runs": len(settled)})
    for event_id, state in events.items():
        ctx.bus.publish(f"pipelines.event.{state}", {"event": event_id, "state": state})
    return counts


def _outcome(s: Settled) -> str:
    if s.state == StageState.DONE:
        return "cached" if s.values.get("cached") else "done"
    return "retry" if s.state == StageState.READY else "failed"


def _observe(ctx: AppContext, names: dict[str, str], settled: list[Settled]) -> None:
    """Record in this process's metrics how long each settled run took, and each raw data read."""
    for s in settled:
        pipeline = names[s.run.pipeline_id]
        seconds = (s.values.get("duration_ms") or 0.0) / 1000
        ctx.metrics.stage_seconds.labels(pipeline, s.run.stage, _outcome(s)).observe(seconds)
        if s.run.stage == RAW:
            result = "fetched" if s.state == StageState.DONE else "failed"
            ctx.metrics.raw_fetches.labels(pipeline, result).inc()


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


# -- the raw stage -----------------------------------------------------------------------------------


def _run_raw(ctx: AppContext, spec: PipelineSpec, runs: list[Claimed]) -> list[Settled]:
    def one(run: Claimed) -> Outcome:
        start = time.perf_counter()
        try:
            got = raw.fetch(ctx, run.event_id, run.source, spec.raw_type)
            return Outcome(value=got, seconds=time.perf_counter() - start)
        except Exception as exc:
            return Outcome(error=exc, trace=traceback.format_exc(), seconds=time.perf_counter() - start)

    remote = sum(r.source.startswith(("http://", "https://")) for r in runs)
    results = list(io_pool(ctx).map(one, runs)) if remote > 1 else [one(r) for r in runs]
    now = utcnow()
    settled = []
    for run, out in zip(runs, results, strict=True):
        if out.error is not None:
            settled.append(failure(run, out, spec.raw_limits.retry, now))
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


def _run_stage(
    ctx: AppContext, pipeline: str, spec: PipelineSpec, stage: StageSpec, runs: list[Claimed]
) -> list[Settled]:
    now = utcnow()
    retry = stage.limits.retry
    try:
        resolved = cache.resolve(stage, ctx.inference)
    except Exception as exc:
        out = Outcome(error=exc, trace=traceback.format_exc())
        return [failure(r, out, retry, now) for r in runs]
    with ctx.uow() as session:
        found, fetched = upstream.find(session, runs, stage.inputs)
    keys: dict[int, str] = {}
    missing: dict[int, str] = {}
    for run in runs:
        hashes = []
        for name in stage.inputs:
            digest = fetched[run.event_id].sha256 if name == RAW and run.event_id in fetched else None
            if name != RAW:
                up = found.get((run.event_id, name))
                digest = up.content_hash if up is not None and not up.archived else None
            if digest is None:
                missing[run.id] = name
                break
            hashes.append(digest)
        else:
            keys[run.id] = cache.cache_key(stage, resolved, hashes, run.params)
    hits = cache.hits(
        ctx, runs[0].pipeline_id, stage, [k for r in runs if (k := keys.get(r.id)) and not r.force]
    )
    settled: list[Settled] = []
    todo: list[Claimed] = []
    for run in runs:
        if run.id in missing:
            err = NotFound(f"the output of {missing[run.id]} for this event is missing or archived")
            settled.append(failure(run, Outcome(error=err), retry, now))
        elif stage.cache and not run.force and keys[run.id] in hits:
            settled.append(cache.from_cache(ctx, pipeline, stage, run, hits[keys[run.id]], keys[run.id]))
        else:
            todo.append(run)
    if todo:
        settled += _execute(ctx, pipeline, stage, todo, found, fetched, keys)
    return settled


@contextlib.contextmanager
def _scratch(ctx: AppContext, stage: StageSpec) -> Iterator[Path | None]:
    """A folder for the batch's local files when its stage's kind reads files (else None), removed once
    the batch's outputs are stored."""
    if not getattr(stage_kind(stage.kind), "reads_files", False):
        yield None
        return
    root = ctx.settings.data_dir / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="stage-", dir=root) as folder:
        yield Path(folder)


def _execute(
    ctx: AppContext,
    pipeline: str,
    stage: StageSpec,
    runs: list[Claimed],
    found: dict[tuple[str, str], upstream.Upstream],
    fetched: dict[str, RawFetch],
    keys: dict[int, str],
) -> list[Settled]:
    with _scratch(ctx, stage) as scratch:
        return _execute_in(ctx, pipeline, stage, runs, found, fetched, keys, scratch)


def _execute_in(
    ctx: AppContext,
    pipeline: str,
    stage: StageSpec,
    runs: list[Claimed],
    found: dict[tuple[str, str], upstream.Upstream],
    fetched: dict[str, RawFetch],
    keys: dict[int, str],
    scratch: Path | None,
) -> list[Settled]:
    retry = stage.limits.retry
    items: list[Item] = []
    ready: list[Claimed] = []
    settled: list[Settled] = []
    for run in runs:
        try:
            mine = None
            if scratch is not None:
                mine = scratch / str(run.id)
                mine.mkdir()
            inputs = upstream.read_inputs(ctx, stage, run, found, fetched, mine)
            items.append(Item(run.event_id, run.event, run.params, inputs, mine))
            ready.append(run)
        except Exception as exc:
            out = Outcome(error=exc, trace=traceback.format_exc())
            settled.append(failure(run, out, retry, utcnow()))
    results, _ = run_stage(stage, items, stage_env(ctx)) if items else ([], "")
    now = utcnow()
    jobs = [(run, out) for run, out in zip(ready, results, strict=True)]
    written = store.write_all(ctx, pipeline, stage, jobs)
    for (run, out), write in zip(jobs, written, strict=True):
        if write.error is not None:
            failed = failure(run, write, retry, now)
            failed.values["logs_key"] = (write.value or {}).get("logs_key")
            settled.append(failed)
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
