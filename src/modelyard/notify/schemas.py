"""What crosses the wire for topics, subscriptions and deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelyard.notify.events import EventType

Events = Annotated[
    list[EventType],
    Field(
        default_factory=list,
        max_length=20,
        description="Event types to send (all when empty): run.queued, run.started, run.succeeded, "
        "run.failed, run.cancelled, results.available, metadata.changed, version.created.",
    ),
]


class _Create(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookCreate(_Create):
    """A webhook: every event is POSTed as JSON to ``url``, signed (see the README)."""

    kind: Literal["webhook"]
    url: str = Field(min_length=1, max_length=2000, examples=["https://hooks.example.com/modelyard"])
    events: Events


class NatsCreate(_Create):
    """A NATS subject on the server of ``MODELYARD_NOTIFY_NATS_URL``."""

    kind: Literal["nats"]
    subject: str = Field(
        max_length=255,
        pattern=r"^[^\s*>.]+(\.[^\s*>.]+)*$",
        description="Dot-separated tokens, no wildcards.",
        examples=["modelyard.models.roofs"],
    )
    events: Events


class MqttCreate(_Create):
    """An MQTT topic on the broker of ``MODELYARD_NOTIFY_MQTT_URL`` (QoS 1)."""

    kind: Literal["mqtt"]
    topic: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[^+#\x00]+$",
        description="No wildcards (+, #).",
        examples=["modelyard/models/roofs"],
    )
    events: Events


SubscriptionCreate = Annotated[WebhookCreate | NatsCreate | MqttCreate, Field(discriminator="kind")]


class SubscriptionPublic(BaseModel):
    """A subscription as listed: where it sends, what, and how its deliveries stand."""

    id: str
    model: str
    kind: Literal["webhook", "nats", "mqtt"]
    url: str | None = None
    subject: str | None = None
    topic: str | None = None
    events: list[str] = Field(description="Event types sent; all when empty.")
    created_at: datetime
    secret_rotated_at: datetime | None = None
    deliveries: dict[str, int] = Field(
        default_factory=dict, description="Deliveries by state: pending, sending, delivered, dead."
    )


class SubscriptionCreated(SubscriptionPublic):
    """A new subscription; a webhook's signing ``secret`` is shown here and never again."""

    secret: str | None = Field(None, description="The webhook's signing secret: store it now.")


class SubscriptionList(BaseModel):
    """A topic's subscriptions, oldest first."""

    items: list[SubscriptionPublic]
    total: int


class SecretRotated(BaseModel):
    """A webhook's new signing secret (the old one stops signing at once); shown once."""

    id: str
    secret: str
    rotated_at: datetime


class DeliveryPublic(BaseModel):
    """One event sent (or being sent) to one subscription."""

    id: str
    event_id: int = Field(description="The event log id (X-Modelyard-Event-Id).")
    event_type: str
    state: Literal["pending", "sending", "delivered", "dead"]
    attempts: int
    next_attempt_at: datetime | None = Field(description="When a pending delivery is tried next.")
    response_code: int | None = Field(description="The HTTP status of the last webhook attempt.")
    error: str | None = Field(description="What went wrong on the last attempt.")
    created_at: datetime
    finished_at: datetime | None
    body: dict[str, Any] = Field(description="The notification, as sent.")


class DeliveryList(BaseModel):
    """A subscription's deliveries, newest event first."""

    items: list[DeliveryPublic]
    total: int


class TopicPublic(BaseModel):
    """A model's topic: it exists as long as the model does."""

    name: str = Field(description="The model's name.")
    events: list[str] = Field(description="The event types of the topic.")
    subscriptions: int
