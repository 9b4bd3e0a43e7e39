"""Deliveries through a real worker (DBOS launched in this process): a local webhook receiver gets every
event signed and in order; a failing one gets retries then a dead letter, which is sent again once it
answers; a rotated secret signs what follows; an unsubscribed one gets nothing more; the real NATS and
MQTT servers of this machine get the events too."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from modelyard.context import AppContext
from modelyard.durable import Durable
from modelyard.notify import dispatch, service
from modelyard.notify.models import DeliveryState
from modelyard.notify.schemas import MqttCreate, NatsCreate, WebhookCreate
from modelyard.notify.signing import verify
from tests.notify.conftest import (
    MQTT_URL,
    NATS_URL,
    Receiver,
    emit,
    eventually,
    require_server,
    sqlite_only,
)

pytestmark = sqlite_only


@pytest.fixture
def worker(ctx: AppContext) -> Iterator[AppContext]:
    durable = Durable(ctx, executor_id="notify-test", queues=[dispatch.FANOUT_QUEUE, dispatch.DELIVERY_QUEUE])
    durable.launch()
    yield ctx
    durable.shutdown()


def subscribe(ctx: AppContext, data: Any, model: str = "roofs") -> tuple[str, str | None]:
    with ctx.uow() as session:
        sub = service.create_subscription(session=session, settings=ctx.settings, model=model, data=data)
    return sub.id, sub.secret


def webhook(receiver: Receiver, *events: str) -> WebhookCreate:
    return WebhookCreate(kind="webhook", url=receiver.url, events=list(events))  # type: ignore[arg-type]


def states(ctx: AppContext, sub: str) -> list[tuple[int, str, int]]:
    with ctx.uow() as session:
        items, _ = service.list_deliveries(session=session, model="roofs", subscription_id=sub)
    return sorted((d.event_id, d.state, d.attempts) for d in items)


def signed_by(secret: str, got: Any) -> bool:
    stamp = int(got.headers["X-Modelyard-Timestamp"])
    return verify(secret, stamp, got.body, got.headers["X-Modelyard-Signature"], now=int(time.time()))


def test_a_receiver_gets_every_event_signed_and_in_order(worker: AppContext, receiver: Receiver) -> None:
    sub, secret = subscribe(worker, webhook(receiver))
    assert secret is not None
    topics = ["geo.run.queued", "geo.run.started", "geo.run.succeeded", "geo.results.available"]
    ids = [emit(worker, topic, "roofs", run_id="r1") for topic in topics]
    emit(worker, "geo.run.queued", "ships", run_id="s1")  # another model's topic
    ids.append(emit(worker, "registry.metadata.changed", "roofs", metadata={"owner": "ops"}))
    got = eventually(lambda: r if len(r := receiver.received()) >= 5 else None)
    assert [g.headers["X-Modelyard-Event-Id"] for g in got] == [str(i) for i in ids]
    assert [g.json()["type"] for g in got] == [
        "run.queued",
        "run.started",
        "run.succeeded",
        "results.available",
        "metadata.changed",
    ]
    assert all(signed_by(secret, g) for g in got)
    assert not signed_by(secret + "x", got[0])
    assert got[-1].json()["data"]["metadata"] == {"owner": "ops"}
    eventually(lambda: states(worker, sub) == [(i, "delivered", 1) for i in ids])
    assert len(receiver.received()) == 5  # nothing twice


def test_a_failing_receiver_gets_retries_then_a_dead_letter_which_can_be_resent(
    worker: AppContext, receiver: Receiver
) -> None:
    receiver.status = 500
    sub, _ = subscribe(worker, webhook(receiver))
    first = emit(worker, "geo.run.failed", "roofs", run_id="r1", error="boom")
    second = emit(worker, "geo.run.queued", "roofs", run_id="r2")
    attempts = worker.settings.notify_max_attempts
    eventually(lambda: states(worker, sub)[:1] == [(first, "dead", attempts)])
    # the second waited for the first to be dead, then got its own attempts
    eventually(lambda: states(worker, sub)[1:] == [(second, "dead", attempts)])
    got = receiver.received()
    assert [g.headers["X-Modelyard-Event-Id"] for g in got] == [str(first)] * attempts + [
        str(second)
    ] * attempts
    with worker.uow() as session:
        dead, _ = service.list_deliveries(
            session=session, model="roofs", subscription_id=sub, state=DeliveryState.DEAD
        )
    assert {(d.response_code, d.error) for d in dead} == {(500, "HTTP 500: nope")}
    receiver.status = 204
    with worker.uow() as session:
        delivery = next(d for d in dead if d.event_id == first)
        service.resend(session=session, model="roofs", subscription_id=sub, delivery_id=delivery.id)
    dispatch.wake_deliveries(worker)
    eventually(lambda: states(worker, sub)[:1] == [(first, "delivered", 1)])
    assert receiver.received()[-1].headers["X-Modelyard-Event-Id"] == str(first)


def test_a_rotated_secret_signs_what_follows_and_unsubscribing_stops_deliveries(
    worker: AppContext, receiver: Receiver
) -> None:
    sub, old = subscribe(worker, webhook(receiver, "run.succeeded"))
    emit(worker, "geo.run.started", "roofs", run_id="r1")  # filtered out
    emit(worker, "geo.run.succeeded", "roofs", run_id="r1")
    eventually(lambda: len(receiver.received()) == 1)
    with worker.uow() as session:
        new = service.rotate_secret(session=session, model="roofs", subscription_id=sub).secret
    emit(worker, "geo.run.succeeded", "roofs", run_id="r2")
    eventually(lambda: len(receiver.received()) == 2)
    first, second = receiver.received()
    assert old is not None and signed_by(old, first) and not signed_by(old, second)
    assert signed_by(new, second)
    with worker.uow() as session:
        service.delete_subscription(session=session, model="roofs", subscription_id=sub)
    other = Receiver()
    try:
        subscribe(worker, webhook(other))  # a witness: once it has the event, the fan-out has passed it
        emit(worker, "geo.run.succeeded", "roofs", run_id="r3")
        eventually(lambda: len(other.received()) == 1)
    finally:
        other.close()
    assert len(receiver.received()) == 2


def _nats_collect(subject: str, count: int, ready: threading.Event, out: list[Any]) -> None:
    import nats

    async def run() -> None:
        client = await nats.connect(NATS_URL)
        try:
            sub = await client.subscribe(subject)
            await client.flush()
            ready.set()
            for _ in range(count):
                out.append(await sub.next_msg(timeout=20))
        finally:
            await client.close()

    asyncio.run(run())


def test_nats_and_mqtt_subscribers_receive_the_events_in_order(worker: AppContext) -> None:
    require_server(NATS_URL)
    require_server(MQTT_URL)
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    suffix = str(time.monotonic_ns())
    subject, topic = f"modelyard.test.{suffix}", f"modelyard/test/{suffix}"
    nats_got: list[Any] = []
    nats_ready = threading.Event()
    collector = threading.Thread(target=_nats_collect, args=(subject, 3, nats_ready, nats_got), daemon=True)
    collector.start()
    mqtt_got: list[bytes] = []
    mqtt_ready = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"notify-test-{suffix}")
    client.on_message = lambda _c, _u, msg: mqtt_got.append(msg.payload)
    client.on_subscribe = lambda *_a: mqtt_ready.set()
    client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    try:
        assert nats_ready.wait(10) and mqtt_ready.wait(10)
        subscribe(worker, NatsCreate(kind="nats", subject=subject))
        subscribe(worker, MqttCreate(kind="mqtt", topic=topic))
        ids = [
            emit(worker, t, "roofs", run_id="r1")
            for t in ("geo.run.queued", "geo.run.started", "geo.run.failed")
        ]
        collector.join(25)
        eventually(lambda: len(mqtt_got) == 3)
    finally:
        client.disconnect()
        client.loop_stop()
    import json

    assert [json.loads(m.data)["id"] for m in nats_got] == [str(i) for i in ids]
    assert [m.headers["X-Modelyard-Event-Id"] for m in nats_got] == [str(i) for i in ids]
    assert [json.loads(p)["type"] for p in mqtt_got] == ["run.queued", "run.started", "run.failed"]
