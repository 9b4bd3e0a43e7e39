"""The topic and subscription routes in-process: what is accepted, what is refused (the exact 4xx, the
field, nothing stored), the secret shown once, rotation, unsubscribe, the delivery log and re-sending."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from modelyard.app import create_app
from modelyard.notify.models import Delivery, DeliveryState
from modelyard.settings import Settings
from tests.conftest import ADMIN_KEY
from tests.notify.conftest import sqlite_only

pytestmark = sqlite_only
SUBS = "/api/v1/topics/roofs/subscriptions"


@pytest.fixture
def api(notify_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(notify_settings), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        assert client.post("/api/v1/models", json={"name": "roofs"}).status_code == 201
        yield client


def problem(resp: Any, status: int, code: str, field: str | None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert resp.headers["content-type"] == "application/problem+json"
    assert (body["code"], body.get("field")) == (code, field)
    return body


def test_a_webhook_subscription_shows_its_secret_once(api: TestClient) -> None:
    created = api.post(
        SUBS, json={"kind": "webhook", "url": "http://127.0.0.1:9/h", "events": ["run.failed"]}
    )
    assert created.status_code == 201, created.text
    sub = created.json()
    assert sub["secret"].startswith("whsec_") and len(sub["secret"]) > 40
    assert (sub["kind"], sub["url"], sub["events"], sub["model"]) == (
        "webhook",
        "http://127.0.0.1:9/h",
        ["run.failed"],
        "roofs",
    )
    listed = api.get(SUBS).json()
    assert listed["total"] == 1 and "secret" not in listed["items"][0]
    assert "secret" not in api.get(f"{SUBS}/{sub['id']}").json()
    topic = api.get("/api/v1/topics/roofs").json()
    assert topic["subscriptions"] == 1 and "results.available" in topic["events"]


def test_a_private_webhook_url_is_refused_unless_allowed_and_nothing_is_stored(
    notify_settings: Settings,
) -> None:
    strict = notify_settings.model_copy(update={"allow_private_urls": False})
    with TestClient(create_app(strict), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        client.post("/api/v1/models", json={"name": "roofs"})
        for url in ("http://127.0.0.1:8080/hook", "http://10.1.2.3/hook", "http://[::1]/hook"):
            body = problem(client.post(SUBS, json={"kind": "webhook", "url": url}), 400, "url-refused", "url")
            assert "non-public address" in body["detail"]
        problem(client.post(SUBS, json={"kind": "webhook", "url": "ftp://x/y"}), 400, "url-refused", "url")
        assert client.get(SUBS).json() == {"items": [], "total": 0}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"kind": "webhook", "url": "http://127.0.0.1/h", "events": ["run.exploded"]},
            "body.webhook.events.0",
        ),
        ({"kind": "pigeon", "url": "http://127.0.0.1/h"}, "body"),
        ({"kind": "nats", "subject": "roofs.*"}, "body.nats.subject"),
        ({"kind": "mqtt", "topic": "roofs/#"}, "body.mqtt.topic"),
        ({"kind": "webhook", "url": "http://127.0.0.1/h", "secret": "mine"}, "body.webhook.secret"),
    ],
)
def test_bad_subscriptions_are_422_naming_the_field(
    api: TestClient, body: dict[str, Any], field: str
) -> None:
    problem(api.post(SUBS, json=body), 422, "validation-failed", field)
    assert api.get(SUBS).json()["total"] == 0


def test_broker_kinds_need_their_server_configured(notify_settings: Settings) -> None:
    bare = notify_settings.model_copy(update={"notify_nats_url": "", "notify_mqtt_url": ""})
    with TestClient(create_app(bare), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        client.post("/api/v1/models", json={"name": "roofs"})
        body = problem(client.post(SUBS, json={"kind": "nats", "subject": "a.b"}), 400, "bad-request", "kind")
        assert "MODELYARD_NOTIFY_NATS_URL" in body["detail"]
        problem(client.post(SUBS, json={"kind": "mqtt", "topic": "a/b"}), 400, "bad-request", "kind")


def test_unknown_models_subscriptions_and_deliveries_are_404(api: TestClient) -> None:
    hook = {"kind": "webhook", "url": "http://127.0.0.1:9/h"}
    problem(api.post("/api/v1/topics/nope/subscriptions", json=hook), 404, "model-not-found", "name")
    problem(api.get("/api/v1/topics/nope"), 404, "model-not-found", "name")
    problem(api.get(f"{SUBS}/missing"), 404, "subscription-not-found", "id")
    problem(api.get(f"{SUBS}/missing/deliveries"), 404, "subscription-not-found", "id")
    sub = api.post(SUBS, json=hook).json()
    problem(
        api.post(f"{SUBS}/{sub['id']}/deliveries/missing:resend"), 404, "delivery-not-found", "delivery_id"
    )


def test_subscriptions_need_the_write_scope(api: TestClient) -> None:
    reader = api.post("/api/v1/keys", json={"name": "r", "scopes": ["read"]}).json()["key"]
    as_reader = {"Authorization": f"Bearer {reader}"}
    hook = {"kind": "webhook", "url": "http://127.0.0.1:9/h"}
    problem(api.post(SUBS, json=hook, headers=as_reader), 403, "forbidden", None)
    problem(api.get(SUBS, headers=as_reader), 403, "forbidden", None)
    assert api.get("/api/v1/topics/roofs", headers=as_reader).status_code == 200
    api.headers.pop("Authorization")
    problem(api.post(SUBS, json=hook), 401, "unauthorized", None)


def test_rotating_a_secret_replaces_it_and_only_webhooks_have_one(api: TestClient) -> None:
    sub = api.post(SUBS, json={"kind": "webhook", "url": "http://127.0.0.1:9/h"}).json()
    rotated = api.post(f"{SUBS}/{sub['id']}:rotate-secret")
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"] != sub["secret"] and rotated.json()["secret"].startswith("whsec_")
    assert api.get(f"{SUBS}/{sub['id']}").json()["secret_rotated_at"] is not None
    nats = api.post(SUBS, json={"kind": "nats", "subject": "roofs.events"}).json()
    assert nats["secret"] is None and nats["subject"] == "roofs.events"
    problem(api.post(f"{SUBS}/{nats['id']}:rotate-secret"), 409, "conflict", None)


def test_unsubscribing_and_deleting_the_model_remove_subscriptions(api: TestClient) -> None:
    one = api.post(SUBS, json={"kind": "webhook", "url": "http://127.0.0.1:9/h"}).json()
    api.post(SUBS, json={"kind": "mqtt", "topic": "roofs/events"})
    assert api.delete(f"{SUBS}/{one['id']}").status_code == 204
    problem(api.delete(f"{SUBS}/{one['id']}"), 404, "subscription-not-found", "id")
    assert api.get(SUBS).json()["total"] == 1
    assert api.delete("/api/v1/models/roofs").status_code == 204
    assert api.post("/api/v1/models", json={"name": "roofs"}).status_code == 201
    assert api.get(SUBS).json()["total"] == 0  # the topic went with its model


def test_a_topic_holds_a_bounded_number_of_subscriptions(notify_settings: Settings) -> None:
    capped = notify_settings.model_copy(update={"notify_max_subscriptions": 2})
    with TestClient(create_app(capped), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        client.post("/api/v1/models", json={"name": "roofs"})
        for _ in range(2):
            assert client.post(SUBS, json={"kind": "mqtt", "topic": "a/b"}).status_code == 201
        problem(client.post(SUBS, json={"kind": "mqtt", "topic": "a/b"}), 409, "conflict", "model")


def test_only_a_dead_delivery_is_sent_again(api: TestClient) -> None:
    sub = api.post(SUBS, json={"kind": "webhook", "url": "http://127.0.0.1:9/h"}).json()
    ctx = api.app.state.ctx  # type: ignore[attr-defined]
    with ctx.uow() as session:
        session.add(
            Delivery(id="d1", subscription_id=sub["id"], event_id=1, event_type="run.failed", body={})
        )
    problem(api.post(f"{SUBS}/{sub['id']}/deliveries/d1:resend"), 409, "conflict", None)
    with ctx.uow() as session:
        session.execute(update(Delivery).values(state=DeliveryState.DEAD, attempts=3, error="HTTP 500"))
    dead = api.get(f"{SUBS}/{sub['id']}/deliveries", params={"state": "dead"}).json()
    assert dead["total"] == 1 and dead["items"][0]["attempts"] == 3
    again = api.post(f"{SUBS}/{sub['id']}/deliveries/d1:resend")
    assert again.status_code == 202, again.text
    assert (again.json()["state"], again.json()["attempts"]) == ("pending", 0)
    assert api.get(f"{SUBS}/{sub['id']}").json()["deliveries"] == {"pending": 1}
