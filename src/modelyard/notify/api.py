"""Topic routes: ``/api/v1/topics/{model}`` (the topic, its server-sent events; read scope) and its
subscriptions and their deliveries (write scope: they hold where events go)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from starlette.concurrency import run_in_threadpool

from modelyard.bodies import OffLoopJSONRoute
from modelyard.context import AppContext
from modelyard.deps import Ctx, LastEventId, ReadKey, WriteKey
from modelyard.durable import log
from modelyard.notify import service
from modelyard.notify.dispatch import wake_deliveries
from modelyard.notify.events import EVENT_TYPES, LOG_TOPICS, EventType, model_of, notification
from modelyard.notify.models import DeliveryState
from modelyard.notify.schemas import (
    DeliveryList,
    DeliveryPublic,
    SecretRotated,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionList,
    SubscriptionPublic,
    TopicPublic,
)
from modelyard.registry import service as registry
from modelyard.sse import SseEvent, event_stream

router = APIRouter(prefix="/api/v1/topics", tags=["notifications"], route_class=OffLoopJSONRoute)
SUBSCRIPTION = "/{model}/subscriptions/{subscription_id}"


@router.get("/{model}", response_model=TopicPublic)
def get_topic(model: str, ctx: Ctx, _: ReadKey) -> TopicPublic:
    """A model's topic (every model has one, named after it): its event types and subscriptions."""
    with ctx.uow() as session:
        return service.topic(session=session, model=model)


async def _events(follower: log.Follower, model: str, wanted: frozenset[str]) -> AsyncIterator[SseEvent]:
    async for event in follower.stream():
        if model_of(event) == model and (not wanted or EVENT_TYPES[event.topic] in wanted):
            body = notification(event, model)
            yield SseEvent(body["type"], body, id=body["id"])


def _start(ctx: AppContext, model: str, follower: log.Follower) -> None:
    with ctx.uow() as session:
        registry.get_model(session=session, name=model)
    follower.start()


@router.get(
    "/{model}/events", responses={200: {"content": {"text/event-stream": {}}, "description": "Event stream"}}
)
async def stream_topic(
    model: str,
    ctx: Ctx,
    _: ReadKey,
    last_event_id: LastEventId = None,
    events: Annotated[list[EventType] | None, Query(description="Only these event types.")] = None,
    after: Annotated[
        int | None, Query(ge=0, description="Start after this event id (else: from now).")
    ] = None,
) -> Response:
    """The topic's events as server-sent events, from now on (or after `after`, or after the
    `Last-Event-ID` a reconnecting client sends): each named by its type, with the event log id as its
    `id` and the notification a webhook gets as data."""
    start = last_event_id if last_event_id is not None else after
    follower = log.Follower(ctx, LOG_TOPICS, after=start)
    await run_in_threadpool(_start, ctx, model, follower)
    return event_stream(_events(follower, model, frozenset(events or ())))


@router.post(
    "/{model}/subscriptions", status_code=status.HTTP_201_CREATED, response_model=SubscriptionCreated
)
def create_subscription(model: str, body: SubscriptionCreate, ctx: Ctx, _: WriteKey) -> SubscriptionCreated:
    """Subscribe to the model's topic: a webhook (`url`; the answer holds its signing `secret`, shown
    only now), a NATS `subject` or an MQTT `topic`, for the event types in `events` (all when empty).
    It gets the events from now on, in order. A webhook URL must be public unless the server allows
    private URLs (400 `url-refused`)."""
    with ctx.uow() as session:
        return service.create_subscription(session=session, settings=ctx.settings, model=model, data=body)


@router.get("/{model}/subscriptions", response_model=SubscriptionList)
def list_subscriptions(model: str, ctx: Ctx, _: WriteKey) -> SubscriptionList:
    """The topic's subscriptions, oldest first, with their deliveries counted by state."""
    with ctx.uow() as session:
        items = service.list_subscriptions(session=session, model=model)
    return SubscriptionList(items=items, total=len(items))


@router.get(SUBSCRIPTION, response_model=SubscriptionPublic)
def get_subscription(model: str, subscription_id: str, ctx: Ctx, _: WriteKey) -> SubscriptionPublic:
    """One subscription."""
    with ctx.uow() as session:
        return service.show_subscription(session=session, model=model, subscription_id=subscription_id)


@router.delete(SUBSCRIPTION, status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_subscription(model: str, subscription_id: str, ctx: Ctx, _: WriteKey) -> Response:
    """Unsubscribe: nothing more is sent, and the subscription's delivery log goes with it."""
    with ctx.uow() as session:
        service.delete_subscription(session=session, model=model, subscription_id=subscription_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(SUBSCRIPTION + ":rotate-secret", response_model=SecretRotated)
def rotate_secret(model: str, subscription_id: str, ctx: Ctx, _: WriteKey) -> SecretRotated:
    """A new signing secret for a webhook (shown only now); every delivery from now on is signed with
    it, the old one no longer."""
    with ctx.uow() as session:
        return service.rotate_secret(session=session, model=model, subscription_id=subscription_id)


@router.get(SUBSCRIPTION + "/deliveries", response_model=DeliveryList)
def list_deliveries(
    model: str,
    subscription_id: str,
    ctx: Ctx,
    _: WriteKey,
    state: Annotated[DeliveryState | None, Query(description="Only deliveries in this state.")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DeliveryList:
    """The subscription's delivery log, newest event first: state, attempts, the last HTTP status and
    error, when a pending one is tried next."""
    with ctx.uow() as session:
        items, total = service.list_deliveries(
            session=session,
            model=model,
            subscription_id=subscription_id,
            state=state,
            offset=offset,
            limit=limit,
        )
    return DeliveryList(items=items, total=total)


@router.post(
    SUBSCRIPTION + "/deliveries/{delivery_id}:resend",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryPublic,
)
def resend_delivery(
    model: str, subscription_id: str, delivery_id: str, ctx: Ctx, _: WriteKey
) -> DeliveryPublic:
    """Send a dead delivery again, from its first attempt (409 unless it is dead)."""
    with ctx.uow() as session:
        out = service.resend(
            session=session, model=model, subscription_id=subscription_id, delivery_id=delivery_id
        )
    wake_deliveries(ctx)
    return out
