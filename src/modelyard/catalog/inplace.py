"""Re-inference in place: a step of records runs through the producing stage here, in this worker, with
no pipeline events. Each record's raw data is read once; a record whose content, stage and model match a
live output of the stage (the pipelines' content-hash cache, the same key an event would have) takes that
output's values; the others run through the stage in its own batches (one model call per batch); every
output is encoded and decoded as the pipeline stores it, so the values equal those of the event path.

A record this cannot give values (unreadable or undecodable raw data, a failing stage, raw data too large
to read whole) is left to the caller, which submits it as an event: it then runs, retries and fails where
the pipeline's events and errors show it. Only a stage that reads the raw data alone and reads no files
runs in place (``runs_in_place``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelyard.catalog.binding import searchable, stored_values
from modelyard.context import AppContext
from modelyard.pipelines.run.runner import io_pool, stage_env
from modelyard.pipelines.spec import RAW, PipelineSpec, StageSpec
from modelyard.pipelines.spec.kinds import stage_kind
from modelyard.pipelines.stages import Item, Outcome, cache, outputs, raw
from modelyard.pipelines.stages.batch import run_stage
from modelyard.pipelines.stages.sources import parse_source


@dataclass(frozen=True, slots=True)
class Due:
    """A record to give the new version: its pk, source, and the name its event would have."""

    pk: int
    source: str
    event: str


@dataclass(slots=True)
class Ran:
    """What a step gave: values by record pk, the records left to events, and how many came from cache."""

    values: dict[int, Any] = field(default_factory=dict)
    failed: list[int] = field(default_factory=list)
    cached: int = 0


def runs_in_place(stage: StageSpec) -> bool:
    """Whether re-inference may run ``stage`` in place: it reads only the raw data, and not as files."""
    return stage.inputs == (RAW,) and not getattr(stage_kind(stage.kind), "reads_files", False)


def run(
    ctx: AppContext,
    pipeline: tuple[str, str],
    spec: PipelineSpec,
    stage: StageSpec,
    due: list[Due],
    *,
    keep: Callable[[], bool] = lambda: True,
) -> Ran:
    """Values of ``stage`` (of the pipeline (id, name) at ``spec``) for every record of ``due`` it can
    give them, a batch of the stage at a time (only one batch's raw data is held); see the module
    docstring. ``keep`` is asked before each batch whether to go on."""
    ran = Ran()
    resolved = cache.resolve(stage, ctx.inference)
    size = stage.limits.batch_size
    for i in range(0, len(due), size):
        if not keep():
            break
        _batch(ctx, pipeline, spec, stage, resolved, due[i : i + size], ran)
    return ran


def _batch(
    ctx: AppContext,
    pipeline: tuple[str, str],
    spec: PipelineSpec,
    stage: StageSpec,
    resolved: str,
    due: list[Due],
    ran: Ran,
) -> None:
    """One batch of ``run``: read, served from cache, or run (records of the same content run once)."""
    read = _read(ctx, spec.raw_type, stage, due)
    keys = {
        pk: cache.cache_key(stage, resolved, [hashlib.sha256(data).hexdigest()], {})
        for pk, data in read.items()
    }
    ran.failed += [d.pk for d in due if d.pk not in read]
    hits = cache.hits(ctx, pipeline[0], stage, list(set(keys.values())))
    todo: dict[str, list[Due]] = {}
    cached = 0
    for d in due:
        key = keys.get(d.pk)
        hit = None if key is None else hits.get(key)
        values = None if hit is None else _cached(ctx, hit)
        if values is not None:
            ran.values[d.pk] = values
            cached += 1
        elif key is not None:
            todo.setdefault(key, []).append(d)
    ran.cached += cached
    _observe(ctx, pipeline[1], stage, "cached", 0.0, cached)
    firsts = [same[0] for same in todo.values()]
    items = [Item(str(d.pk), d.event, {}, {RAW: read[d.pk]}) for d in firsts]
    outcomes, now = run_stage(stage, items, stage_env(ctx)) if items else ([], resolved)
    for d, out in zip(firsts, outcomes, strict=True):
        # a model version registered since the step began is not the version these values are stored as
        values = _values(stage, out) if now in (resolved, "") else None
        for same in todo[keys[d.pk]]:
            if values is None:
                ran.failed.append(same.pk)
            else:
                ran.values[same.pk] = values
        _observe(ctx, pipeline[1], stage, "done" if values is not None else "failed", out.seconds)


def _read(ctx: AppContext, raw_type: str, stage: StageSpec, due: list[Due]) -> dict[int, bytes]:
    """The raw data of each record that can be read whole and is of ``raw_type``, by pk (URLs in the
    pipelines' I/O threads). A stage that reads it as that type checks it better than its header does."""
    check = stage.accepts[:1] != (raw_type,)

    def one(d: Due) -> bytes | None:
        try:
            source = parse_source(d.source, data_dir=ctx.settings.data_dir)
            got = raw.read_whole(ctx, source, raw_type, check=check)
        except Exception:  # the record's event will meet the same failure and show it
            return None
        return got.data if got is not None else None

    remote = sum(d.source.startswith(("http://", "https://")) for d in due)
    found = list(io_pool(ctx).map(one, due)) if remote > 1 else [one(d) for d in due]
    return {d.pk: data for d, data in zip(due, found, strict=True) if data is not None}


def _cached(ctx: AppContext, hit: Any) -> Any:
    """The values of a cache hit's output (None when it gives none, or can no longer be read)."""
    try:
        return stored_values(hit.output_kind, hit.result, lambda: ctx.storage.get_bytes(hit.output_key))
    except Exception:  # removed since it was found: the record runs instead
        return None


def _values(stage: StageSpec, out: Outcome) -> Any:
    """The values of one outcome as the pipeline would store and the harvest read them (None: failed)."""
    if out.error is not None:
        return None
    if stage.produces == "array" and isinstance(out.value, np.ndarray) and out.value.dtype != object:
        return searchable("array", out.value)  # what storing it as .npy and reading it back gives
    try:
        enc = outputs.encode(out.value, stage.produces)
    except Exception:
        return None
    value = (
        enc.inline if enc.kind == "json" and enc.inline is not None else outputs.decode(enc.kind, enc.data)
    )
    return searchable(enc.kind, value)


def _observe(
    ctx: AppContext, pipeline: str, stage: StageSpec, outcome: str, seconds: float, n: int = 1
) -> None:
    histogram = ctx.metrics.stage_seconds.labels(pipeline, stage.name, outcome)
    for _ in range(n):
        histogram.observe(seconds)
