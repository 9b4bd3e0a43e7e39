"""What a notification is: the one table from event log topics to notification event types, and the body
every sink sends (webhook JSON, NATS and MQTT payloads, SSE data).

A log event belongs to a model's topic through its ``model`` field (the registry's events also carry the
model as their subject).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from modelyard.durable.log import LogEvent

EventType = Literal[
    "run.queued",
    "run.started",
    "run.succeeded",
    "run.failed",
    "run.cancelled",
    "results.available",
    "metadata.changed",
    "version.created",
]
"""The events of a model's topic, as subscribers name them (a subscription's ``events`` filter)."""

# event log topic -> notification event type: the only place the two vocabularies meet
EVENT_TYPES: dict[str, EventType] = {
    "geo.run.queued": "run.queued",
    "geo.run.started": "run.started",
    "geo.run.succeeded": "run.succeeded",
    "geo.run.failed": "run.failed",
    "geo.run.cancelled": "run.cancelled",
    "geo.results.available": "results.available",
    "registry.metadata.changed": "metadata.changed",
    "registry.version.created": "version.created",
}
LOG_TOPICS: tuple[str, ...] = tuple(EVENT_TYPES)
ALL_TYPES: tuple[EventType, ...] = get_args(EventType)


def model_of(event: LogEvent) -> str | None:
    """The model whose topic ``event`` belongs to, or None if it is not a topic event."""
    if event.topic not in EVENT_TYPES:
        return None
    model = event.data.get("model", event.subject)
    return model if isinstance(model, str) and model else None


def notification(event: LogEvent, model: str) -> dict[str, Any]:
    """The body sent for ``event`` on ``model``'s topic: its id (the event log id, the same for every
    subscriber and every retry: dedupe by it), type, model, when it happened and what the log says."""
    return {
        "id": str(event.id),
        "type": EVENT_TYPES[event.topic],
        "model": model,
        "at": event.at.isoformat(),
        "data": event.data,
    }
