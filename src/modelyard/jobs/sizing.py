"""How many rows a chunk of a job takes when the server chooses, and how often a running chunk says how far
it is.

Submission sizes chunks by bytes of model input (``submission.chunk_rows``): right for a model that is
fast per row, whose jobs stay in that big-chunk shape. A model slow per row would make a chunk of minutes
that one worker slot runs alone while progress stands still, so planning measures the model's cost per row
(a probe batch the first time, then every chunk run in this process) and, when a full chunk would cost
more than a worker slot's share of ``job_chunk_seconds``, cuts the job into chunks of at most that many
seconds, and into at least one chunk per worker slot. A chunk runs in sub-batches of about
``PROGRESS_SECONDS`` each, and reports its rows done between them.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from modelyard.jobs.inputs import Features, Span

if TYPE_CHECKING:
    from modelyard.context import AppContext
    from modelyard.serving.service import VersionRef

log = logging.getLogger("modelyard.jobs")
MIN_ROWS = 1_000  # the smallest automatic chunk, and the grain a costly job is planned at
PROBE_ROWS = 256
PROGRESS_SECONDS = 0.5


def _costs(ctx: AppContext) -> dict[tuple[str, int], float]:
    """(model, version) -> CPU seconds per row in this process, a moving average."""
    return ctx.row_costs


def known_cost(ctx: AppContext, key: tuple[str, int]) -> float | None:
    """Seconds per row of a model version measured in this process, if any."""
    return _costs(ctx).get(key)


def observe(ctx: AppContext, key: tuple[str, int], rows: int, seconds: float) -> None:
    """Fold one run into the version's cost per row; runs of few rows (their time is mostly the call's
    fixed overhead) are left out, so tiny jobs do not make a fast model look slow."""
    if rows < MIN_ROWS:
        return
    costs = _costs(ctx)
    seen = costs.get(key)
    per_row = seconds / rows
    costs[key] = per_row if seen is None else 0.7 * seen + 0.3 * per_row


def row_cost(ctx: AppContext, ref: VersionRef, features: Features) -> float | None:
    """Seconds per row of ``ref``: measured already, or timed now on a probe batch of zeros (CPU time of
    this thread: waiting for the interpreter is not the model's cost). None if the width is dynamic."""
    found = known_cost(ctx, ref.key)
    if found is not None or features.width is None:
        return found
    probe = {features.input_name: np.zeros((PROBE_ROWS, features.width), dtype=features.dtype)}
    try:
        ctx.inference.predict_sync(ref, probe)  # loads the session: the first run is not the model's cost
        start = time.thread_time()
        ctx.inference.predict_sync(ref, probe)
    except Exception:  # a model that refuses zeros: sized by bytes alone; its chunks will say what they cost
        log.info("could not time a probe batch of %s@%s", ref.name, ref.version, exc_info=True)
        return None
    cost = (time.thread_time() - start) / PROBE_ROWS
    _costs(ctx).setdefault(ref.key, cost)
    return cost


def costly(ctx: AppContext, cost: float | None, rows: int) -> bool:
    """Whether ``rows`` rows cost more than a worker slot's share of ``job_chunk_seconds``."""
    share = ctx.settings.job_chunk_seconds / max(ctx.settings.worker_concurrency, 1)
    return cost is not None and cost * rows > share


def spread_rows(ctx: AppContext, cost: float, total: int, rows: int) -> int:
    """Rows per chunk of a costly job of ``total`` rows: at most ``job_chunk_seconds`` of work, at least one
    chunk per worker slot, never more than ``rows`` (the bytes bound), in whole ``MIN_ROWS``."""
    by_time = ctx.settings.job_chunk_seconds / max(cost, 1e-12)
    by_slots = math.ceil(total / max(ctx.settings.worker_concurrency, 1))
    target = min(rows, by_time, by_slots)
    return max(MIN_ROWS, int(target) // MIN_ROWS * MIN_ROWS)


def merge(spans: list[Span], every: int) -> list[Span]:
    """Adjacent spans joined ``every`` at a time (the last join may hold fewer)."""
    if every <= 1:
        return spans
    joined = []
    for i in range(0, len(spans), every):
        first, last = spans[i], spans[min(i + every, len(spans)) - 1]
        joined.append(Span(first.row_start, last.row_end, first.byte_start, last.byte_end))
    return joined


def step_rows(cost: float | None, rows: int) -> int:
    """Rows per sub-batch of a chunk of ``rows``: about ``PROGRESS_SECONDS`` of work each; the whole chunk
    at once for a fast model (no extra calls, no copies)."""
    if cost is None or cost * rows <= PROGRESS_SECONDS:
        return max(rows, 1)
    return max(MIN_ROWS, int(PROGRESS_SECONDS / cost))


def concat(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The outputs of a chunk's sub-batches as one set of arrays."""
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
