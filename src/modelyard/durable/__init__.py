"""Durable work on DBOS Transact: where a part's background work goes.

DBOS checkpoints workflows and steps in its system database (its own SQLite file beside ours in the
embedded default, the same PostgreSQL database under schema ``dbos`` in scale-out; ``Database`` in
``db.py`` decides which). Steps run at least once: every side effect they have is keyed so a repeat is
harmless.

Modules:

- ``engine`` — DBOS set-up and launch (``Durable``), the one ``WORKFLOW_MODULES`` list, heartbeat ticks.
- ``queue`` — ``ClaimedQueue``: the one claimed-work queue. Claim, release, stale-claim sweep and the
  queue page's figures all come from its declaration.
- ``loop`` — ``ClaimLoop`` (a worker's loop over one queue) and ``runs(queue)``, which names the workflow
  that runs each claim.
- ``workers`` — heartbeat rows and recovery of a dead worker's workflows (the one private DBOS call).
- ``status`` — ``WorkState``, the one mapping from DBOS's workflow statuses.
- ``client`` — workflow states and cron schedules as any process sees them (``ctx.dispatcher``).
- ``system`` — the queue monitor's reads of DBOS's own tables (the only raw SQL on them).

For a new part (geo runs, webhook deliveries, trainer runs, learning iterations...):

- Its work waits as rows of its own table (a state, a claim id and a claimed-at column), declared once as
  a ``ClaimedQueue`` in the part's ``dispatch.py``; its ``workflows.py`` holds the DBOS workflow that runs
  one claim, decorated ``@runs(QUEUE)``, and its module is added to ``WORKFLOW_MODULES``. No claim code:
  a policy hook (``ClaimedQueue.policy``) is the place for grouping or limits of its own. Code that
  queues such work in this process calls ``loop.wake(ctx, QUEUE.name)``.
- Use claimed rows when work must be recorded by any process (an API replica runs no DBOS), listed,
  cancelled or retried as domain state, or batched for throughput: that is all of modelyard's work today.
  Use DBOS's own queues (``DBOS.register_queue`` at launch, in ``engine``) only for work that is born
  inside a running workflow, is never shown as domain state and needs a global concurrency limit DBOS
  should enforce; none does yet.
- Events other parts react to go to the durable event log (``durable.log``: append in the transaction of
  the change, follow from SSE streams and sinks); a part's own stage kinds are registered objects
  (``pipelines.spec.kinds.register_stage_kind``, from the part's own package); anything that depends on
  SQLite or PostgreSQL goes to ``db.py`` (``Database``), nowhere else.
"""

from __future__ import annotations

from modelyard.durable.client import DbosDispatcher, Dispatcher, open_dispatcher
from modelyard.durable.engine import (
    APP_NAME,
    APP_VERSION,
    WORKFLOW_MODULES,
    Durable,
    current,
    import_workflows,
    on_tick,
    sweep_claims,
)
from modelyard.durable.loop import ClaimLoop, runs, start_claimed, wake
from modelyard.durable.queue import Claimed, ClaimedQueue, Group, Monitor
from modelyard.durable.status import WorkState, from_engine
from modelyard.durable.workers import Worker

__all__ = [
    "APP_NAME",
    "APP_VERSION",
    "WORKFLOW_MODULES",
    "ClaimLoop",
    "Claimed",
    "ClaimedQueue",
    "DbosDispatcher",
    "Dispatcher",
    "Durable",
    "Group",
    "Monitor",
    "WorkState",
    "Worker",
    "current",
    "from_engine",
    "import_workflows",
    "on_tick",
    "open_dispatcher",
    "runs",
    "start_claimed",
    "sweep_claims",
    "wake",
]
