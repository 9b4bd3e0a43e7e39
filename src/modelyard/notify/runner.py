"""One attempt at one delivery, and its outcome written back: delivered, given back for a retry after a
doubling wait, or dead (every attempt failed, or retrying cannot help). Every write is guarded by the
claim, so a repeated step (DBOS runs steps at least once) cannot count an attempt twice. ``trim`` keeps
the delivery logs to their retention."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from modelyard.db import utcnow
from modelyard.notify import sinks
from modelyard.notify.models import DELIVERY_TERMINAL, Delivery, DeliveryState, Subscription

if TYPE_CHECKING:
    from modelyard.context import AppContext
    from modelyard.settings import Settings

log = logging.getLogger("modelyard.notify")
# finished deliveries one trim deletes at most
TRIM_BATCH = 5000


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


def deliver(ctx: AppContext, claim_id: str, delivery_id: str) -> str:
    """Send the delivery claimed as ``claim_id`` once and record how it went; its new state ("gone" if it
    is no longer this claim's: its subscription was deleted, or a repeat of a recorded step)."""
    with ctx.uow() as session:
        row = session.get(Delivery, delivery_id)
        if row is None or row.claim_id != claim_id or row.state != DeliveryState.SENDING:
            return "gone"
        sub = session.get_one(Subscription, row.subscription_id)
        target, body, attempt = (
            sinks.Target(sub.kind, sub.target, sub.secret),
            dict(row.body),
            row.attempts + 1,
        )
    try:
        sent = sinks.send(ctx, target, body)
    except Exception as exc:  # a bug of ours must not leave the row claimed until the sweep
        log.exception("sending a notification failed", extra={"delivery": delivery_id})
        sent = sinks.Sent(False, error=f"{type(exc).__name__}: {exc}"[:1000])
    values = outcome(ctx.settings, attempt, sent)
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
            extra={"delivery": delivery_id, "attempts": attempt, "error": sent.error},
        )
    return str(values["state"])


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
