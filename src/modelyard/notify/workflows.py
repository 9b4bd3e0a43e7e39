"""Durable workflows of notifications (DBOS), each under an explicit, stable name; the claimed queues
they run are declared in ``notify.dispatch``.

``notify.fan_out`` runs one round of the fan-out under a claim of the cursor; ``notify.deliver`` sends
one delivery once under its claim (a retry is a later claim of the same row, see ``notify.dispatch``);
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
def send_step(claim_id: str, delivery_id: str) -> str:
    """One attempt at the delivery, recorded."""
    return runner.deliver(current(), claim_id, delivery_id)


@runs(dispatch.DELIVERIES)
@DBOS.workflow(name="notify.deliver")
def deliver(claim_id: str, delivery_id: str) -> str:
    """Send one claimed delivery; its state after the attempt."""
    return send_step(claim_id, delivery_id)


@on_tick
def trim_deliveries(ctx: AppContext) -> None:
    """The retention of the delivery logs, on every worker heartbeat (bounded; every worker runs it)."""
    runner.trim(ctx)
