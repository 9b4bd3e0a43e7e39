"""Durable work of pipelines (DBOS), under explicit, stable names.

``pipelines.run_batch`` runs one claimed batch of stage runs in one checkpointed step (retried on
infrastructure errors; a stage's own failures are per-event and settled by the step). The dispatcher
loop (``pipelines``, selectable with ``modelyard worker --queues``) starts one such workflow per batch
in its own process, with the batch id as workflow id: a dispatcher that dies mid-batch has the workflow
recovered by another worker (see ``durable``), and the step's keyed writes make the repeat harmless.
Heartbeat ticks sweep stale claims, reconcile stuck events and archive expired outputs.

Importing registers; nothing starts here.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from typing import Any

from dbos import DBOS

from modelyard.context import AppContext
from modelyard.durable import background, current, dispatcher, on_tick, start_claimed
from modelyard.pipelines import dispatch
from modelyard.pipelines.run import archive, runner

log = logging.getLogger("modelyard.pipelines")
BATCH_WORKFLOW = "pipelines.run_batch"
LOOP = "pipelines"


@DBOS.step(
    name="pipelines.stage_batch", retries_allowed=True, max_attempts=5, interval_seconds=0.5, backoff_rate=2.0
)
def stage_batch_step(batch_id: str) -> dict[str, int]:
    """Run a batch's stage over its events, write their outputs, settle them (idempotent)."""
    return runner.run_batch(current(), batch_id)


@DBOS.workflow(name=BATCH_WORKFLOW)
def run_batch(batch_id: str) -> dict[str, int]:
    """One batch of stage runs."""
    return stage_batch_step(batch_id)


def start_batch(batch_id: str) -> Future[Any] | None:
    """Start the batch workflow here (a no-op returning None if that workflow id already exists)."""
    return start_claimed(batch_id, run_batch, batch_id)


@background(LOOP)
def dispatch_loop(ctx: AppContext, stop: threading.Event) -> None:
    """Claim and start stage batches until the worker stops."""
    dispatch.StageDispatcher(ctx, start_batch, parallel_starts=True).serve(ctx, stop, "pipelines.dispatcher")


@on_tick
def housekeeping(ctx: AppContext) -> None:
    """Re-queue stale claims, advance stuck events, archive outputs past their pipeline's TTL."""
    dispatch.sweep(ctx, dispatcher(ctx).statuses)
    dispatch.reconcile(ctx)
    archive.archive_due(ctx)
