"""Topics and subscriptions: create (a webhook's URL checked like every user URL), list, delete, rotate a
webhook's secret; deliveries listed per subscription, and a dead one sent again."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelyard.db import aware, utcnow
from modelyard.durable import log as event_log
from modelyard.errors import (
    BadRequest,
    Conflict,
    DeliveryNotFound,
    FetchFailed,
    SubscriptionNotFound,
    UrlRefused,
)
from modelyard.fetch import check_url
from modelyard.notify.events import ALL_TYPES
from modelyard.notify.models import Delivery, DeliveryState, SinkKind, Subscription
from modelyard.notify.schemas import (
    DeliveryPublic,
    MqttCreate,
    NatsCreate,
    SecretRotated,
    SubscriptionCreated,
    SubscriptionPublic,
    TopicPublic,
    WebhookCreate,
)
from modelyard.notify.signing import new_secret
from modelyard.registry import service as registry
from modelyard.settings import Settings

Create = WebhookCreate | NatsCreate | MqttCreate


def topic(*, session: Session, model: str) -> TopicPublic:
    """A model's topic (``ModelNotFound`` if there is no such model)."""
    found = registry.get_model(session=session, name=model)
    count = session.scalar(select(func.count()).where(Subscription.model_id == found.id)) or 0
    return TopicPublic(name=found.name, events=list(ALL_TYPES), subscriptions=count)


def _target(settings: Settings, data: Create) -> str:
    if isinstance(data, WebhookCreate):
        try:
            check_url(data.url, allow_private=settings.allow_private_urls)
        except FetchFailed as exc:  # a host that does not resolve is a wrong URL here
            raise UrlRefused(exc.detail, field="url") from None
        return data.url
    if isinstance(data, NatsCreate):
        if not settings.notify_nats_url:
            raise BadRequest(
                "nats subscriptions need a NATS server: set MODELYARD_NOTIFY_NATS_URL", field="kind"
            )
        return data.subject
    if not settings.notify_mqtt_url:
        raise BadRequest(
            "mqtt subscriptions need an MQTT broker: set MODELYARD_NOTIFY_MQTT_URL", field="kind"
        )
    return data.topic


def public(sub: Subscription, model: str, counts: dict[str, int] | None = None) -> SubscriptionPublic:
    """The wire form of a subscription (never its secret)."""
    where = {SinkKind.WEBHOOK: "url", SinkKind.NATS: "subject", SinkKind.MQTT: "topic"}[SinkKind(sub.kind)]
    return SubscriptionPublic.model_validate(
        {
            "id": sub.id,
            "model": model,
            "kind": sub.kind,
            where: sub.target,
            "events": list(sub.events),
            "created_at": aware(sub.created_at),
            "secret_rotated_at": aware(sub.secret_rotated_at),
            "deliveries": counts or {},
        }
    )


def create_subscription(
    *, session: Session, settings: Settings, model: str, data: Create
) -> SubscriptionCreated:
    """Subscribe to ``model``'s topic: the events appended to the log from now on."""
    found = registry.get_model(session=session, name=model)
    target = _target(settings, data)
    count = session.scalar(select(func.count()).where(Subscription.model_id == found.id)) or 0
    if count >= settings.notify_max_subscriptions:
        raise Conflict(
            f"topic {model!r} has {count} subscriptions, the most allowed "
            "(MODELYARD_NOTIFY_MAX_SUBSCRIPTIONS); delete one first",
            field="model",
        )
    secret = new_secret() if isinstance(data, WebhookCreate) else None
    sub = Subscription(
        model_id=found.id,
        kind=data.kind,
        target=target,
        secret=secret,
        events=list(dict.fromkeys(data.events)),
        since_event=event_log.head(session),
        created_at=utcnow(),
    )
    session.add(sub)
    session.flush()
    return SubscriptionCreated(**public(sub, found.name).model_dump(), secret=secret)


def get_subscription(*, session: Session, model: str, subscription_id: str) -> Subscription:
    """The subscription of ``model``'s topic with that id."""
    found = registry.get_model(session=session, name=model)
    sub = session.get(Subscription, subscription_id)
    if sub is None or sub.model_id != found.id:
        raise SubscriptionNotFound(model, subscription_id)
    return sub


def _counts(session: Session, ids: list[str]) -> dict[str, dict[str, int]]:
    rows = session.execute(
        select(Delivery.subscription_id, Delivery.state, func.count())
        .where(Delivery.subscription_id.in_(ids))
        .group_by(Delivery.subscription_id, Delivery.state)
    ).all()
    out: dict[str, dict[str, int]] = {i: {} for i in ids}
    for sub_id, state, count in rows:
        out[sub_id][state] = int(count)
    return out


def list_subscriptions(*, session: Session, model: str) -> list[SubscriptionPublic]:
    """The topic's subscriptions, oldest first, with their deliveries counted by state."""
    found = registry.get_model(session=session, name=model)
    subs = session.scalars(
        select(Subscription)
        .where(Subscription.model_id == found.id)
        .order_by(Subscription.created_at, Subscription.id)
    ).all()
    counts = _counts(session, [s.id for s in subs])
    return [public(s, found.name, counts[s.id]) for s in subs]


def show_subscription(*, session: Session, model: str, subscription_id: str) -> SubscriptionPublic:
    """One subscription, with its deliveries counted by state."""
    sub = get_subscription(session=session, model=model, subscription_id=subscription_id)
    return public(sub, model, _counts(session, [sub.id])[sub.id])


def delete_subscription(*, session: Session, model: str, subscription_id: str) -> None:
    """Unsubscribe: the subscription and its deliveries go (one being sent now is not recorded)."""
    session.delete(get_subscription(session=session, model=model, subscription_id=subscription_id))


def rotate_secret(*, session: Session, model: str, subscription_id: str) -> SecretRotated:
    """A new signing secret for a webhook; every delivery from now on is signed with it."""
    sub = get_subscription(session=session, model=model, subscription_id=subscription_id)
    if sub.kind != SinkKind.WEBHOOK:
        raise Conflict(f"subscription {sub.id!r} is a {sub.kind} subscription: only webhooks are signed")
    sub.secret, sub.secret_rotated_at = new_secret(), utcnow()
    session.flush()
    return SecretRotated(id=sub.id, secret=sub.secret, rotated_at=sub.secret_rotated_at)


def delivery_public(row: Delivery) -> DeliveryPublic:
    """The wire form of a delivery."""
    return DeliveryPublic(
        id=row.id,
        event_id=row.event_id,
        event_type=row.event_type,
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=aware(row.next_attempt_at) if row.state == DeliveryState.PENDING else None,
        response_code=row.response_code,
        error=row.error,
        created_at=aware(row.created_at),
        finished_at=aware(row.finished_at),
        body=row.body,
    )


def list_deliveries(
    *,
    session: Session,
    model: str,
    subscription_id: str,
    state: DeliveryState | None = None,
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[DeliveryPublic], int]:
    """The subscription's deliveries (of ``state``), newest event first, and how many there are."""
    sub = get_subscription(session=session, model=model, subscription_id=subscription_id)
    where = [Delivery.subscription_id == sub.id]
    if state is not None:
        where.append(Delivery.state == state)
    total = session.scalar(select(func.count()).select_from(Delivery).where(*where)) or 0
    rows = session.scalars(
        select(Delivery).where(*where).order_by(Delivery.event_id.desc()).offset(offset).limit(limit)
    ).all()
    return [delivery_public(r) for r in rows], total


def resend(*, session: Session, model: str, subscription_id: str, delivery_id: str) -> DeliveryPublic:
    """Send a dead delivery again, from its first attempt (``Conflict`` unless it is dead)."""
    sub = get_subscription(session=session, model=model, subscription_id=subscription_id)
    row = session.get(Delivery, delivery_id)
    if row is None or row.subscription_id != sub.id:
        raise DeliveryNotFound(sub.id, delivery_id)
    if row.state != DeliveryState.DEAD:
        raise Conflict(f"delivery {delivery_id!r} is {row.state}: only a dead delivery is sent again")
    row.state, row.attempts, row.next_attempt_at = DeliveryState.PENDING, 0, utcnow()
    row.claim_id = row.claimed_at = row.finished_at = None
    session.flush()
    return delivery_public(row)
