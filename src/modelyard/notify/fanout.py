"""The fan-out: follows the event log from a persisted cursor and turns every topic event into one
delivery row per subscription that wants it.

One round reads up to ``ROUND_EVENTS`` events after the cursor (a ``durable.log.Follower`` started there,
so PostgreSQL's commit-order gaps are waited for as every log consumer waits), and in ONE transaction
writes their deliveries and moves the cursor, guarded by the round's claim: the cursor and the deliveries
move together or not at all, so a crash or a restart loses and repeats nothing (and the unique
(subscription, event) key would refuse a repeat anyway). Rounds are claims of the cursor row (the
``notify.fanout`` queue), so one worker fans out at a time, whichever is up.

A subscription gets the events after the log id it was created at (``since_event``), of the types its
``events`` filter names (all when empty).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from modelyard.db import insert_new, new_id, utcnow
from modelyard.durable import log as event_log
from modelyard.notify.events import EVENT_TYPES, LOG_TOPICS, model_of, notification
from modelyard.notify.models import Cursor, Delivery, DeliveryState, Subscription
from modelyard.registry.models import RegisteredModel

if TYPE_CHECKING:
    from modelyard.context import AppContext

log = logging.getLogger("modelyard.notify")
CURSOR = "deliveries"
ROUND_EVENTS = 500


def deliveries_for(session: Session, events: Sequence[event_log.LogEvent]) -> list[dict[str, Any]]:
    """The delivery rows of ``events``: one per event and subscription of its model that wants it."""
    by_model: dict[str, list[event_log.LogEvent]] = defaultdict(list)
    for event in events:
        model = model_of(event)
        if model is not None:
            by_model[model].append(event)
    if not by_model:
        return []
    subscriptions: dict[str, list[Subscription]] = defaultdict(list)
    found = session.execute(
        select(Subscription, RegisteredModel.name)
        .join(RegisteredModel, RegisteredModel.id == Subscription.model_id)
        .where(RegisteredModel.name.in_(list(by_model)))
        .order_by(Subscription.created_at, Subscription.id)
    ).all()
    for subscription, name in found:
        subscriptions[name].append(subscription)
    rows, now = [], utcnow()
    for model, model_events in by_model.items():
        for event in model_events:
            kind = EVENT_TYPES[event.topic]
            body = notification(event, model)
            for sub in subscriptions.get(model, []):
                if event.id <= sub.since_event or (sub.events and kind not in sub.events):
                    continue
                rows.append(
                    {
                        "id": new_id(),
                        "subscription_id": sub.id,
                        "event_id": event.id,
                        "event_type": kind,
                        "body": body,
                        "state": DeliveryState.PENDING,
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                )
    return rows


def _release(ctx: AppContext, claim_id: str, values: dict[str, Any]) -> int:
    with ctx.uow() as session:
        moved = session.execute(
            update(Cursor)
            .where(Cursor.name == CURSOR, Cursor.claim_id == claim_id)
            .values(claim_id=None, claimed_at=None, **values)
        )
    return int(moved.rowcount)  # type: ignore[attr-defined]


def fan_out(ctx: AppContext, claim_id: str) -> int:
    """One round under the claim ``claim_id`` of the cursor: write the deliveries of the events after it
    and move it past them (one transaction), then let it be claimed again (at once if it moved, else after
    ``notify_poll_seconds``). How many deliveries; 0 if the claim was lost meanwhile."""
    with ctx.uow() as session:
        cursor = session.get(Cursor, CURSOR)
        if cursor is None or cursor.claim_id != claim_id:
            return 0
        position = cursor.position
    try:
        follower = event_log.Follower(ctx, LOG_TOPICS, after=position, limit=ROUND_EVENTS)
        events = follower.poll()
        # moved: there may be more now; stuck (PostgreSQL waiting out a gap in the ids): not every poll
        idle = 0.0 if follower.position > position else ctx.settings.notify_poll_seconds
        with ctx.uow() as session:
            rows = deliveries_for(session, events)
            moved = session.execute(
                update(Cursor)
                .where(Cursor.name == CURSOR, Cursor.claim_id == claim_id, Cursor.position == position)
                .values(
                    position=follower.position,
                    claim_id=None,
                    claimed_at=None,
                    due_at=utcnow() + timedelta(seconds=idle),
                )
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                session.rollback()
                return 0
            insert_new(session, Delivery.__table__, rows)
    except Exception:
        log.exception("notification fan-out failed; retried in 1 s", extra={"position": position})
        _release(ctx, claim_id, {"due_at": utcnow() + timedelta(seconds=1.0)})
        return 0
    return len(rows)
