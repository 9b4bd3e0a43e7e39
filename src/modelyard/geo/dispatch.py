"""The claimed queue of geo runs (a ``durable.ClaimedQueue``; see ``durable.queue``).

``geo.runs``: a run waits as a row of ``geo_runs`` (``state = 'queued'``, no claim); a match writes that
row and nothing else, so an API replica needs no worker. Every worker claims runs one per claim, oldest
first, up to ``geo_run_slots`` at once; each claim is run by one ``geo.run`` workflow (its id the claim
id, kept in ``claimed_by``).
"""

from __future__ import annotations

from typing import Any

from modelyard.context import AppContext
from modelyard.durable import Claimed, ClaimedQueue, Monitor, wake
from modelyard.geo.models import GeoRun, RunState

RUN_QUEUE = "geo.runs"


def _waiting() -> tuple[Any, ...]:
    return (GeoRun.state == RunState.QUEUED, GeoRun.claimed_by.is_(None))


def _cleared() -> dict[str, Any]:
    return {"claimed_at": None}


def _args(claimed: Claimed) -> tuple[Any, ...]:
    return (int(claimed.keys[0][0]),)


RUNS = ClaimedQueue(
    name=RUN_QUEUE,
    model=GeoRun,
    key=(GeoRun.id,),
    claim_id=GeoRun.claimed_by,
    claimed_at=GeoRun.claimed_at,
    waiting=_waiting,
    claimed=lambda: (GeoRun.state == RunState.QUEUED,),
    order_by=(GeoRun.created_at, GeoRun.id),
    args=_args,
    slots=lambda s: s.geo_run_slots,
    poll_seconds=lambda s: s.geo_run_poll_seconds,
    claim_timeout=lambda s: s.geo_run_claim_timeout_seconds,
    on_release=_cleared,
    monitor=Monitor(
        state=GeoRun.state,
        waiting_since=GeoRun.created_at,
        finished_at=GeoRun.finished_at,
        waiting=RunState.QUEUED,
        running=RunState.RUNNING,
        succeeded=(RunState.SUCCEEDED,),
        failed=(RunState.FAILED,),
    ),
)


def wake_runs(ctx: AppContext) -> None:
    """Nudge this process's geo-run loop (if it runs one): runs were just queued here."""
    wake(ctx, RUN_QUEUE)
