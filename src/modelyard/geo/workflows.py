"""Durable work of geo: ``geo.run`` runs one claimed run (the ``geo.runs`` queue of ``geo.dispatch``; the
claim id is the workflow id), and every heartbeat sweeps runs whose workflow is gone.

A run is one step: take it (a new single-use token, held only in memory; a DBOS checkpoint never sees it),
run its command, settle it. A worker killed mid-step has its workflow recovered by a live worker, which
runs the step again: the run's next attempt, or failed with the reason once ``geo_run_max_attempts`` are
spent. Importing registers; nothing starts here.
"""

from __future__ import annotations

import logging

from dbos import DBOS

from modelyard.context import AppContext
from modelyard.durable import current, on_tick, runs
from modelyard.geo import dispatch
from modelyard.geo import execution as service

log = logging.getLogger("modelyard.geo")
RUN_WORKFLOW = "geo.run"


@DBOS.step(name="geo.execute")
def execute_step(claim_id: str, run_id: int) -> str | None:
    """Take the run, run its command in the sandbox, settle it; the final state (None: nothing ran)."""
    ctx = current()
    started = service.start_run(ctx, run_id, claim_id)
    if started is None:
        return None
    try:
        done = service.execute(ctx, started)
    except Exception as exc:  # the command could not be started at all (argv[0] missing, …)
        log.warning("geo run could not run its command", extra={"run_id": run_id, "error": repr(exc)})
        service.fail_run(ctx, run_id, started.attempt, f"the command could not be run: {exc}")
        return "failed"
    return service.finish_run(ctx, started, done)


@runs(dispatch.RUNS)
@DBOS.workflow(name=RUN_WORKFLOW)
def run_geo(claim_id: str, run_id: int) -> str | None:
    """One geo run, start to end."""
    return execute_step(claim_id, run_id)


@on_tick
def sweep_lost_runs(ctx: AppContext) -> None:
    """Requeue or fail runs left running by a workflow that is gone (idempotent: every worker runs it)."""
    service.sweep_lost(ctx)
