"""Re-inference in place: steps of records run through the producing stage here, in this worker, with
no pipeline events. Each record's raw data is read once (a data-dir file by ``sources.read_file``: opened,
then checked where it is); a record whose content, stage and model match a live output of the stage (the
pipelines' content-hash cache, the same key an event would have) takes that output's values; the others
run through the stage in its own batches (one model call per batch); every output is encoded and decoded
as the pipeline stores it, so the values equal those of the event path.

The ``features`` stage is run in two parts, by the same functions as the stage: its images are decoded
and preprocessed in the helper process (``inferrers.prepare``), and the model runs here. While this
thread reads, hashes and looks up the next batches, runs the model and the caller stores a step, the
helper decodes the batches queued ahead, the next step's first ones included; decoding small images is
most of the stage's time and holds the interpreter, so a second thread would not share it. (That the
in-place path makes no stage runs also means it writes nothing to the content-hash cache: a record
re-run through an event later runs the model again.)

A record this cannot give values (unreadable or undecodable raw data, a failing stage, raw data too large
to read whole) is left to the caller, which submits it as an event: it then runs, retries and fails where
the pipeline's events and errors show it. Only a stage that reads the raw data alone and reads no files
runs in place (``runs_in_place``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any

import numpy as np

from modelyard.catalog.binding import searchable, stored_values
from modelyard.context import AppContext
from modelyard.inferrers.builtin import preprocess_of
from modelyard.inferrers.features import Predict, l2_normalise
from modelyard.inferrers.prepare import Prepared
from modelyard.pipelines.run.runner import io_pool, stage_env
from modelyard.pipelines.spec import RAW, PipelineSpec, StageSpec
from modelyard.pipelines.spec.kinds import stage_kind
from modelyard.pipelines.stages import Item, Outcome, cache, outputs, raw
from modelyard.pipelines.stages.batch import load_model, run_stage
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
    steps: Iterable[list[Due]],
    *,
    keep: Callable[[], bool] = lambda: True,
) -> Generator[Ran, None, None]:
    """Values of ``stage`` (of the pipeline (id, name) at ``spec``) for every record of each step of
    ``steps`` it can give them, one ``Ran`` a step, a batch of the stage at a time; see the module
    docstring. ``keep`` is asked before each batch is read whether to go on. While the caller stores a
    step, the next step's first batches are already being decoded (``features`` decodes in the helper)."""
    resolved = cache.resolve(stage, ctx.inference)
    batches = _batches(ctx, pipeline[0], stage, resolved, spec.raw_type, steps, keep)
    if _prepared_apart(stage):
        yield from _run_apart(ctx, pipeline[1], stage, resolved, batches)
        return
    ran = Ran()
    for last, looked in batches:
        items = [Item(str(d.pk), d.event, {}, {RAW: data}) for d, data in looked.firsts]
        outcomes, now = run_stage(stage, items, stage_env(ctx)) if items else ([], resolved)
        # a model version registered since the step began is not the version these values are stored as
        values = [_values(stage, out) if now in (resolved, "") else None for out in outcomes]
        _gather(ctx, pipeline[1], stage, looked, values, [out.seconds for out in outcomes], ran)
        if last:
            yield ran
            ran = Ran()


@dataclass(slots=True)
class _Looked:
    """A batch read and looked up: what the cache gave (in ``ran``), and the first record of each content
    still to run with its raw data, the others of the same content by its first's pk."""

    ran: Ran
    firsts: list[tuple[Due, bytes]]
    same: dict[int, list[int]]


def _batches(
    ctx: AppContext,
    pipeline_id: str,
    stage: StageSpec,
    resolved: str,
    raw_type: str,
    steps: Iterable[list[Due]],
    keep: Callable[[], bool],
) -> Iterator[tuple[bool, _Looked]]:
    """Each batch of each step read and looked up in the content-hash cache, and whether it ends its step
    (an empty step yields nothing)."""
    size = stage.limits.batch_size
    for due in steps:
        for i in range(0, len(due), size):
            if not keep():
                if i:
                    yield True, _Looked(Ran(), [], {})  # the step so far is still stored
                return
            yield (
                i + size >= len(due),
                _look_up(ctx, pipeline_id, stage, resolved, raw_type, due[i : i + size]),
            )


def _look_up(
    ctx: AppContext, pipeline_id: str, stage: StageSpec, resolved: str, raw_type: str, due: list[Due]
) -> _Looked:
    """One batch read (records that cannot be are failed), served from cache, or left to run (records of
    the same content run once)."""
    read = _read(ctx, raw_type, stage, due)
    pks = list(read)
    digests = [sha256(read[pk]).hexdigest() for pk in pks]
    keys = dict(zip(pks, cache.raw_cache_keys(stage, resolved, digests), strict=True))
    looked = _Looked(Ran(failed=[d.pk for d in due if d.pk not in read]), [], {})
    hits = cache.hits(ctx, pipeline_id, stage, list(set(keys.values())))
    first: dict[str, int] = {}
    for d in due:
        key = keys.get(d.pk)
        if key is None:
            continue
        hit = hits.get(key)
        values = None if hit is None else _cached(ctx, hit)
        if values is not None:
            looked.ran.values[d.pk] = values
            looked.ran.cached += 1
        elif key in first:
            looked.same[first[key]].append(d.pk)
        else:
            first[key] = d.pk
            looked.same[d.pk] = [d.pk]
            looked.firsts.append((d, read[d.pk]))
    return looked


def _gather(
    ctx: AppContext,
    pipeline: str,
    stage: StageSpec,
    looked: _Looked,
    values: list[Any],
    seconds: list[float],
    ran: Ran,
) -> None:
    """Add a batch's values (None: failed) of its firsts, and what the cache gave, to ``ran``."""
    ran.values.update(looked.ran.values)
    ran.failed += looked.ran.failed
    ran.cached += looked.ran.cached
    _observe(ctx, pipeline, stage, "cached", 0.0, looked.ran.cached)
    for (d, _), got, took in zip(looked.firsts, values, seconds, strict=True):
        for pk in looked.same[d.pk]:
            if got is None:
                ran.failed.append(pk)
            else:
                ran.values[pk] = got
        _observe(ctx, pipeline, stage, "done" if got is not None else "failed", took)


# -- features, decoded in the helper process ---------------------------------------------------------


def _prepared_apart(stage: StageSpec) -> bool:
    """Whether the stage is the ``features`` inferrer, whose images the helper process decodes."""
    return stage.kind == "inferrer" and stage.config.get("inferrer") == "features"


def _run_apart(
    ctx: AppContext, pipeline: str, stage: StageSpec, resolved: str, batches: Iterator[tuple[bool, _Looked]]
) -> Generator[Ran, None, None]:
    """``run`` of ``features``: the helper decodes and preprocesses each batch (``inferrers.prepare``)
    while this thread reads the next and runs the model over the last, as the stage does (its values
    equal the stage's: the same functions, the same batches)."""
    env = stage_env(ctx)
    pre = preprocess_of(stage.params)
    jobs = (
        ((last, looked), [data for _, data in looked.firsts], pre, env.images) for last, looked in batches
    )
    ran = Ran()
    model = None  # bound at each step's first batch
    with closing(ctx.preparer.get().map(jobs)) as prepared_batches:
        for (last, looked), prepared in prepared_batches:
            start = time.perf_counter()
            if model is None:
                model = load_model(env, stage.params)
            values = _features(model, resolved, prepared)
            took = (time.perf_counter() - start) / max(len(looked.firsts), 1)
            _gather(ctx, pipeline, stage, looked, values, [took] * len(values), ran)
            if last:
                yield ran
                ran, model = Ran(), None


def _features(model: tuple[Predict, str] | Outcome, resolved: str, prepared: Prepared) -> list[Any]:
    """The values of each image of a prepared batch (None for those that failed), the model run once."""
    values: list[Any] = [None] * len(prepared.ok)
    if prepared.batch is None:
        return values
    if isinstance(model, Outcome) or model[1] not in (resolved, ""):
        return values  # no model, or one registered since the pass began: not the version stored
    loaded = model
    try:
        rows = l2_normalise(loaded[0](prepared.batch))
    except Exception:  # the batch fails each of its events, as in the stage
        return values
    decoded = iter(rows)
    return [searchable("array", next(decoded)) if ok else None for ok in prepared.ok]


def _read(ctx: AppContext, raw_type: str, stage: StageSpec, due: list[Due]) -> dict[int, bytes]:
    """The raw data of each record that can be read whole and is of ``raw_type``, by pk (URLs in the
    pipelines' I/O threads). A stage that reads it as that type checks it better than its header does."""
    check = stage.accepts[:1] != (raw_type,)
    data_dir = ctx.settings.data_dir

    def one(d: Due) -> bytes | None:
        try:
            local = "://" not in d.source or d.source.startswith("file://")
            source = d.source if local else parse_source(d.source, data_dir=data_dir)
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
