"""The two claimed queues of notifications (``durable.ClaimedQueue`` declarations; see ``durable.queue``).

``notify.fanout``: the fan-out's cursor in the event log is one row, due when a topic event is past it
(or other parts' events have piled up past ``SKIP_AHEAD``). A worker claims it, its ``notify.fan_out``
workflow runs one round (``notify.fanout``) and gives it back; so one worker at a time reads the log, and
a log without topic events costs a short scan per poll, not a workflow.

``notify.deliveries``: each delivery waits as a row (``pending``, due at ``next_attempt_at``), claimed one
per claim up to ``notify_concurrency`` per worker, each sent by one ``notify.deliver`` workflow, which
then takes the next ones of the same line under the same claim while they go through (a burst). A failed
attempt gives the row back with a later ``next_attempt_at`` (doubling waits), so a retry is just the row
being claimed again, by any worker; the last attempt makes it dead.

Order. Events of one model reach each subscriber in log order because only the HEAD of a subscription's
line can be claimed: a delivery waits while an earlier one (lower event id) of its subscription is pending
or being sent. The rule is a condition of ``waiting`` (a correlated NOT EXISTS) rather than a policy's
groups, because ``waiting`` is also the guard of the claiming UPDATE: two workers cannot both take
neighbours of one line, whatever they read before. Dead deliveries do not hold the line.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import aliased

from modelyard.context import AppContext
from modelyard.db import utcnow
from modelyard.durable import ClaimedQueue, Monitor, wake
from modelyard.durable.log import LogEntry
from modelyard.notify.events import LOG_TOPICS
from modelyard.notify.models import DELIVERY_OPEN, Cursor, Delivery, DeliveryState

FANOUT_QUEUE, DELIVERY_QUEUE = "notify.fanout", "notify.deliveries"
# other parts' events the cursor may lag behind before a round runs just to move past them: the check for
# topic events scans the log from the cursor (by id; the log has no index by topic), so at most this many
# rows plus what came since the last poll, and no workflow runs for a log busy with job progress alone
SKIP_AHEAD = 1000


def _log_grew() -> tuple[Any, ...]:
    head = select(func.max(LogEntry.id)).scalar_subquery()
    topic_event = exists().where(LogEntry.id > Cursor.position, LogEntry.topic.in_(LOG_TOPICS))
    return (
        Cursor.claim_id.is_(None),
        Cursor.due_at <= utcnow(),
        or_(topic_event, Cursor.position < head - SKIP_AHEAD),
    )


FANOUT = ClaimedQueue(
    name=FANOUT_QUEUE,
    model=Cursor,
    key=(Cursor.name,),
    claim_id=Cursor.claim_id,
    claimed_at=Cursor.claimed_at,
    waiting=_log_grew,
    claimed=lambda: (),  # a round gives its claim back itself; the sweep frees one whose worker died
    order_by=(Cursor.name,),
    args=lambda _claimed: (),
    slots=lambda _s: 1,
    poll_seconds=lambda s: s.notify_poll_seconds,
    claim_timeout=lambda s: s.notify_claim_timeout_seconds,
    on_release=lambda: {"claimed_at": None},
)


# an earlier delivery of the same line (one alias, so the statement compiles to one cached form)
_EARLIER = aliased(Delivery, name="earlier")


def _due() -> tuple[Any, ...]:
    earlier = _EARLIER
    head_of_line = ~exists().where(
        earlier.subscription_id == Delivery.subscription_id,
        earlier.event_id < Delivery.event_id,
        earlier.state.in_(DELIVERY_OPEN),
    )
    return (
        Delivery.state == DeliveryState.PENDING,
        Delivery.claim_id.is_(None),
        Delivery.next_attempt_at <= utcnow(),
        head_of_line,
    )


DELIVERIES = ClaimedQueue(
    name=DELIVERY_QUEUE,
    model=Delivery,
    key=(Delivery.id,),
    claim_id=Delivery.claim_id,
    claimed_at=Delivery.claimed_at,
    waiting=_due,
    claimed=lambda: (Delivery.state == DeliveryState.SENDING,),
    order_by=(Delivery.event_id, Delivery.id),
    args=lambda claimed: (str(claimed.keys[0][0]),),
    slots=lambda s: s.notify_concurrency,
    poll_seconds=lambda s: s.notify_poll_seconds,
    claim_timeout=lambda s: s.notify_claim_timeout_seconds,
    on_claim=lambda: {"state": DeliveryState.SENDING},
    on_release=lambda: {"state": DeliveryState.PENDING, "claimed_at": None},
    monitor=Monitor(
        state=Delivery.state,
        waiting_since=Delivery.created_at,
        finished_at=Delivery.finished_at,
        waiting=DeliveryState.PENDING,
        running=DeliveryState.SENDING,
        succeeded=(DeliveryState.DELIVERED,),
        failed=(DeliveryState.DEAD,),
        dead=(DeliveryState.DEAD,),
    ),
)


def wake_deliveries(ctx: AppContext) -> None:
    """Nudge this process's delivery loop (if it runs one): deliveries were just written here."""
    wake(ctx, DELIVERY_QUEUE)
