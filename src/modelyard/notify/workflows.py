"""Durable workflows of notifications (DBOS), each under an explicit, stable name; the claimed queues
they run are declared in ``notify.dispatch``.

``notify.fan_out`` runs one round of the fan-out under a claim of the cursor; ``notify.deliver`` sends
a claimed delivery once, then the next ones of its subscription while they go through (a retry is a later
claim of the same row, see ``notify.dispatch``);
every heartbeat trims the delivery logs. Importing registers; nothing starts here.
"""

from __future__ import annotations

from dbos import DBOS

from modelyard.context import AppContext
from modelyard.durable import current, on_tick, runs
from modelyard.notify import dispatch, fanout, runner


@DBOS.step(name="notify.fan_out_round")
def fan_out_step(claim_id: str) -> int:
    """Write the deliveries of the events after the cursor and move it (one transaction)."""
    ctx = current()
    count = fanout.fan_out(ctx, claim_id)
    if count:
        dispatch.wake_deliveries(ctx)
    return count


@runs(dispatch.FANOUT)
@DBOS.workflow(name="notify.fan_out")
def fan_out(claim_id: str) -> int:
    """One round of the fan-out; how many deliveries it wrote."""
    return fan_out_step(claim_id)


@DBOS.step(name="notify.send")
def send_step(claim_id: str) -> dict[str, int]:
    """One attempt at the claimed delivery, recorded, and the next ones of its line while they go."""
    return runner.deliver(current(), claim_id)


@runs(dispatch.DELIVERIES)
@DBOS.workflow(name="notify.deliver")
def deliver(claim_id: str, delivery_id: str) -> dict[str, int]:
    """Send a claimed delivery (``delivery_id``, kept with the workflow's inputs) and what follows it in
    its subscription's line; how many deliveries ended in each state."""
    return send_step(claim_id)


@on_tick
def trim_deliveries(ctx: AppContext) -> None:
    """The retention of the delivery logs, on every worker heartbeat (bounded; every worker runs it)."""
    runner.trim(ctx)
