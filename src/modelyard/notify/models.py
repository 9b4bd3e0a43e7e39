"""Notification tables: subscriptions to a model's topic, their deliveries (one per event and
subscription: the rows of the ``notify.deliveries`` claimed queue) and the fan-out's cursor in the log.

A topic has no table: it is its model (see the package docstring), so subscriptions point at the model
row and go with it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.db import Base, BigId, new_id, utcnow


class SinkKind(StrEnum):
    """Where a subscription's events go."""

    WEBHOOK = "webhook"
    NATS = "nats"
    MQTT = "mqtt"


class DeliveryState(StrEnum):
    """pending (waiting, or waiting for a retry) -> sending (claimed) -> delivered | dead (every attempt
    failed; a re-send makes it pending again)."""

    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    DEAD = "dead"

    def is_final(self) -> bool:
        """Whether the delivery has stopped."""
        return self in DELIVERY_TERMINAL


DELIVERY_TERMINAL = frozenset({DeliveryState.DELIVERED, DeliveryState.DEAD})
# a delivery still to happen: a later one of the same subscription waits for it
DELIVERY_OPEN = (DeliveryState.PENDING, DeliveryState.SENDING)


class Subscription(Base):
    """One subscriber of a model's topic: a webhook URL (with its signing secret), a NATS subject or an
    MQTT topic, the event types it wants (all when empty), and the log id it was created at (it gets the
    events after it)."""

    __tablename__ = "notify_subscriptions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    target: Mapped[str] = mapped_column(String(2000))  # the URL, NATS subject or MQTT topic
    # the webhook's signing secret: kept as is, since signing needs it (shown once, at creation/rotation)
    secret: Mapped[str | None] = mapped_column(String(100), default=None)
    events: Mapped[list[Any]] = mapped_column(JSON, default=list)
    since_event: Mapped[int] = mapped_column(BigId, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    secret_rotated_at: Mapped[datetime | None] = mapped_column(default=None)


class Delivery(Base):
    """One event for one subscription, and how sending it went."""

    __tablename__ = "notify_deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id", name="uq_notify_deliveries_subscription_event"),
        Index("ix_notify_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("notify_subscriptions.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(BigId)  # the event log id
    event_type: Mapped[str] = mapped_column(String(50))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)  # the notification, copied: the log is trimmed
    state: Mapped[str] = mapped_column(String(20), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claim_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    response_code: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class Cursor(Base):
    """How far the fan-out has read the event log (the row of the ``notify.fanout`` claimed queue)."""

    __tablename__ = "notify_cursors"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    position: Mapped[int] = mapped_column(BigId, default=0)
    due_at: Mapped[datetime] = mapped_column(default=utcnow)  # not read again before (idle back-off)
    claim_id: Mapped[str | None] = mapped_column(String(32), default=None)
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
