"""One attempt at one delivery, and its outcome written back: delivered, given back for a retry after a
doubling wait, or dead (every attempt failed, or retrying cannot help). Every write is guarded by the
claim, so a repeated step (DBOS runs steps at least once) cannot count an attempt twice. ``trim`` keeps
the delivery logs to their retention."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from modelyard.db import utcnow
from modelyard.notify import sinks
from modelyard.notify.dispatch import DELIVERIES
from modelyard.notify.models import DELIVERY_TERMINAL, Delivery, DeliveryState, Subscription

if TYPE_CHECKING:
    from modelyard.context import AppContext
    from modelyard.settings import Settings

log = logging.getLogger("modelyard.notify")
# finished deliveries one trim deletes at most
TRIM_BATCH = 5000
# deliveries one workflow sends down one subscription's line, and for how long at most
BURST, BURST_SECONDS = 100, 2.0


def backoff_seconds(settings: Settings, attempt: int) -> float:
    """The wait after failed attempt number ``attempt`` (1, 2...): ``notify_retry_seconds`` doubled per
    attempt, at most ``notify_retry_max_seconds``."""
    return float(min(settings.notify_retry_seconds * 2 ** (attempt - 1), settings.notify_retry_max_seconds))


def outcome(settings: Settings, attempt: int, sent: sinks.Sent) -> dict[str, Any]:
    """The columns a delivery gets after attempt number ``attempt`` went as ``sent``."""
    now = utcnow()
    common = {"attempts": attempt, "response_code": sent.status, "error": sent.error}
    if sent.ok:
        return {**common, "state": DeliveryState.DELIVERED, "error": None, "finished_at": now}
    if sent.permanent or attempt >= settings.notify_max_attempts:
        return {**common, "state": DeliveryState.DEAD, "finished_at": now}
    return {
        **common,
        "state": DeliveryState.PENDING,
        "claim_id": None,
        "claimed_at": None,
        "next_attempt_at": now + timedelta(seconds=backoff_seconds(settings, attempt)),
    }


def attempt(ctx: AppContext, claim_id: str, delivery_id: str) -> str:
    """Send the delivery claimed as ``claim_id`` once and record how it went; its new state ("gone" if it
    is no longer this claim's: its subscription was deleted, or a repeat of a recorded step)."""
    with ctx.uow() as session:
        row = session.get(Delivery, delivery_id)
        if row is None or row.claim_id != claim_id or row.state != DeliveryState.SENDING:
            return "gone"
        sub = session.get_one(Subscription, row.subscription_id)
        target = sinks.Target(sub.kind, sub.target, sub.secret)
        body, number = dict(row.body), row.attempts + 1
    try:
        sent = sinks.send(ctx, target, body)
    except Exception as exc:  # a bug of ours must not leave the row claimed until the sweep
        log.exception("sending a notification failed", extra={"delivery": delivery_id})
        sent = sinks.Sent(False, error=f"{type(exc).__name__}: {exc}"[:1000])
    values = outcome(ctx.settings, number, sent)
    with ctx.uow() as session:
        recorded = session.execute(
            update(Delivery)
            .where(
                Delivery.id == delivery_id,
                Delivery.claim_id == claim_id,
                Delivery.state == DeliveryState.SENDING,
            )
            .values(values)
            .execution_options(synchronize_session=False)
        )
    if not recorded.rowcount:  # type: ignore[attr-defined]
        return "gone"
    if values["state"] == DeliveryState.DEAD:
        log.warning(
            "notification dead-lettered",
            extra={"delivery": delivery_id, "attempts": number, "error": sent.error},
        )
    return str(values["state"])


def _claimed(ctx: AppContext, claim_id: str) -> tuple[str, str] | None:
    """(id, subscription) of the delivery this claim is sending, if any."""
    with ctx.uow() as session:
        found = session.execute(
            select(Delivery.id, Delivery.subscription_id)
            .where(Delivery.claim_id == claim_id, Delivery.state == DeliveryState.SENDING)
            .order_by(Delivery.event_id)
            .limit(1)
        ).first()
    return (str(found[0]), str(found[1])) if found is not None else None


def claim_next(ctx: AppContext, claim_id: str, subscription_id: str) -> str | None:
    """Take the next delivery of the subscription's line under the same claim, if it may go now (the
    queue's own ``waiting`` guard: it is the head of the line, due, unclaimed); its id, if one was taken."""
    waiting = DELIVERIES.waiting()
    with ctx.uow() as session:
        next_id = session.scalar(
            select(Delivery.id)
            .where(Delivery.subscription_id == subscription_id, *waiting)
            .order_by(Delivery.event_id)
            .limit(1)
        )
        if next_id is None:
            return None
        taken = session.execute(
            update(Delivery)
            .where(Delivery.id == next_id, *waiting)
            .values(claim_id=claim_id, claimed_at=utcnow(), state=DeliveryState.SENDING)
            .execution_options(synchronize_session=False)
        )
    return str(next_id) if taken.rowcount else None  # type: ignore[attr-defined]


def deliver(ctx: AppContext, claim_id: str) -> dict[str, int]:
    """Send what the claim holds, then, while each is delivered, the next ones of the same subscription
    under the same claim (at most ``BURST`` or ``BURST_SECONDS``): one durable workflow for a run of a
    subscriber's events instead of one each, still one at a time and in order. A re-run (recovery)
    carries on from the delivery the claim holds. How many deliveries ended in each state."""
    counts: dict[str, int] = {}
    deadline = time.monotonic() + BURST_SECONDS
    held = _claimed(ctx, claim_id)
    for _ in range(BURST):
        if held is None:
            break
        delivery_id, subscription_id = held
        state = attempt(ctx, claim_id, delivery_id)
        counts[state] = counts.get(state, 0) + 1
        if state != DeliveryState.DELIVERED or time.monotonic() > deadline:
            break
        taken = claim_next(ctx, claim_id, subscription_id)
        held = (taken, subscription_id) if taken is not None else None
    return counts


def trim(ctx: AppContext, *, batch: int = TRIM_BATCH) -> int:
    """Delete up to ``batch`` delivered or dead deliveries that finished over
    ``notify_delivery_retention_hours`` ago; how many went."""
    cutoff = utcnow() - timedelta(hours=ctx.settings.notify_delivery_retention_hours)
    old = (
        select(Delivery.id)
        .where(Delivery.state.in_(DELIVERY_TERMINAL), Delivery.finished_at < cutoff)
        .limit(batch)
    )
    with ctx.uow() as session:
        gone = session.execute(
            delete(Delivery).where(Delivery.id.in_(old.scalar_subquery())),
            execution_options={"synchronize_session": False},
        )
    return int(getattr(gone, "rowcount", 0))
