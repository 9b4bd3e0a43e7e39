"""Durable work of pipelines (DBOS), under explicit, stable names.

``pipelines.run_batch`` runs one claimed batch of stage runs in one checkpointed step (retried on
infrastructure errors; a stage's own failures are per-event and settled by the step). The claim loop of
the ``pipelines`` queue (``dispatch.STAGE_RUNS``, selectable with ``modelyard worker --queues``) starts
one such workflow per batch in its own process, with the batch id as workflow id: a worker that dies
mid-batch has the workflow recovered by another (see ``durable``), and the step's keyed writes make
the repeat harmless. Heartbeat ticks reconcile stuck events and archive expired outputs (every
queue's stale claims are swept by ``durable``).

Importing registers; nothing starts here.
"""

from __future__ import annotations

import logging

from dbos import DBOS

from modelyard.context import AppContext
from modelyard.durable import current, on_tick, runs
from modelyard.pipelines import dispatch
from modelyard.pipelines.run import archive, runner

log = logging.getLogger("modelyard.pipelines")
BATCH_WORKFLOW = "pipelines.run_batch"


@DBOS.step(
    name="pipelines.stage_batch", retries_allowed=True, max_attempts=5, interval_seconds=0.5, backoff_rate=2.0
)
def stage_batch_step(batch_id: str) -> dict[str, int]:
    """Run a batch's stage over its events, write their outputs, settle them (idempotent)."""
    return runner.run_batch(current(), batch_id)


@runs(dispatch.STAGE_RUNS)
@DBOS.workflow(name=BATCH_WORKFLOW)
def run_batch(batch_id: str) -> dict[str, int]:
    """One batch of stage runs."""
    return stage_batch_step(batch_id)


@on_tick
def housekeeping(ctx: AppContext) -> None:
    """Advance stuck events, archive outputs past their pipeline's TTL."""
    dispatch.reconcile(ctx)
    archive.archive_due(ctx)
