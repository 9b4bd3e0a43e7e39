"""Sending one notification: a signed webhook POST, a NATS publish, an MQTT publish. Each returns a
``Sent`` (never raises for the far end's faults), so the delivery runner records every outcome the same way.

Webhooks go through ``modelyard.fetch``'s guard: the URL is checked (http(s), no private address unless
``MODELYARD_ALLOW_PRIVATE_URLS``) and the connection goes to the address checked; redirects are not
followed (a 3xx is a failure), and at most ``SNIPPET_BYTES`` of an answer are read, for the delivery log.
NATS and MQTT connect per notification to the servers of the settings (no user-named hosts).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import httpx
import orjson

from modelyard.db import new_id
from modelyard.errors import FetchFailed, UrlRefused
from modelyard.fetch import check_url, http_client, pinned
from modelyard.notify.models import SinkKind
from modelyard.notify.signing import sign

if TYPE_CHECKING:
    from modelyard.context import AppContext

SNIPPET_BYTES = 512
USER_AGENT = "modelyard-notify/1"


@dataclass(frozen=True, slots=True)
class Sent:
    """How one attempt went: delivered or not, the HTTP status if one came back, what went wrong, and
    whether retrying cannot help (a URL now refused)."""

    ok: bool
    status: int | None = None
    error: str | None = None
    permanent: bool = False


@dataclass(frozen=True, slots=True)
class Target:
    """Where a notification goes: the subscription's kind, URL/subject/topic and webhook secret."""

    kind: str
    target: str
    secret: str | None = None


def send(ctx: AppContext, target: Target, body: dict[str, Any]) -> Sent:
    """Send ``body`` (a notification, see ``notify.events``) to ``target``."""
    payload = orjson.dumps(body)
    timeout = ctx.settings.notify_timeout_seconds
    if target.kind == SinkKind.WEBHOOK:
        return post_webhook(ctx, target, body, payload)
    try:
        if target.kind == SinkKind.NATS:
            publish_nats(ctx.settings.notify_nats_url, target.target, body, payload, timeout)
        elif target.kind == SinkKind.MQTT:
            publish_mqtt(ctx.settings.notify_mqtt_url, target.target, payload, timeout)
        else:
            return Sent(False, error=f"unknown subscription kind {target.kind!r}", permanent=True)
    except Exception as exc:  # a broker down, a timeout: retried
        return Sent(False, error=f"{type(exc).__name__}: {exc}"[:1000])
    return Sent(True)


def webhook_headers(secret: str, body: dict[str, Any], payload: bytes, timestamp: int) -> dict[str, str]:
    """The headers of a webhook call: content type, signature, timestamp, event id and type."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Modelyard-Signature": sign(secret, timestamp, payload),
        "X-Modelyard-Timestamp": str(timestamp),
        "X-Modelyard-Event-Id": str(body["id"]),
        "X-Modelyard-Event-Type": str(body["type"]),
    }


def post_webhook(ctx: AppContext, target: Target, body: dict[str, Any], payload: bytes) -> Sent:
    """POST ``payload`` to the webhook, signed now; delivered on a 2xx answer."""
    settings = ctx.settings
    try:
        checked = check_url(target.target, allow_private=settings.allow_private_urls)
    except UrlRefused as exc:
        return Sent(False, error=exc.detail, permanent=True)
    except FetchFailed as exc:  # the name does not resolve (now)
        return Sent(False, error=exc.detail)
    headers = webhook_headers(target.secret or "", body, payload, int(time.time()))
    try:
        with (
            pinned(checked),
            http_client(ctx).stream(
                "POST",
                target.target,
                content=payload,
                headers=headers,
                timeout=settings.notify_timeout_seconds,
                follow_redirects=False,
            ) as resp,
        ):
            # read (a little of) the answer: a response read to its end keeps its connection for reuse
            snippet = b""
            for chunk in resp.iter_bytes():
                snippet += chunk
                if len(snippet) >= SNIPPET_BYTES:
                    break
            if 200 <= resp.status_code < 300:
                return Sent(True, status=resp.status_code)
            said = snippet[:SNIPPET_BYTES].decode("utf-8", "replace").strip()
            return Sent(False, status=resp.status_code, error=f"HTTP {resp.status_code}: {said}".strip(": "))
    except httpx.TimeoutException:
        return Sent(False, error=f"no answer within {settings.notify_timeout_seconds:g} s")
    except httpx.HTTPError as exc:
        return Sent(False, error=f"{type(exc).__name__}: {exc}"[:1000])


def publish_nats(url: str, subject: str, body: dict[str, Any], payload: bytes, timeout: float) -> None:
    """Publish ``payload`` on ``subject`` of the NATS server at ``url`` and wait until the server has it
    (a flush); the event id goes in ``Nats-Msg-Id`` too (JetStream de-duplicates by it)."""
    if not url:
        raise RuntimeError("no NATS server is configured (MODELYARD_NOTIFY_NATS_URL)")
    headers = {
        "Nats-Msg-Id": str(body["id"]),
        "X-Modelyard-Event-Id": str(body["id"]),
        "X-Modelyard-Event-Type": str(body["type"]),
    }

    async def publish() -> None:
        import nats

        async def quiet(_exc: Exception) -> None:  # errors surface from the calls below
            return None

        client = await nats.connect(
            servers=[url],
            connect_timeout=timeout,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=quiet,
        )
        try:
            await client.publish(subject, payload, headers=headers)
            await client.flush(timeout=max(1, round(timeout)))
        finally:
            await client.close()

    asyncio.run(asyncio.wait_for(publish(), timeout * 2))


def publish_mqtt(url: str, topic: str, payload: bytes, timeout: float) -> None:
    """Publish ``payload`` on ``topic`` of the MQTT broker at ``url`` with QoS 1, and wait for the
    broker's acknowledgement."""
    if not url:
        raise RuntimeError("no MQTT broker is configured (MODELYARD_NOTIFY_MQTT_URL)")
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    parts = urlsplit(url)
    tls = parts.scheme == "mqtts"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"modelyard-{new_id()[:16]}")
    client.connect_timeout = timeout
    if parts.username:
        client.username_pw_set(unquote(parts.username), unquote(parts.password or ""))
    if tls:
        client.tls_set()
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        connected.set()

    client.on_connect = on_connect
    client.connect(parts.hostname or "127.0.0.1", parts.port or (8883 if tls else 1883), keepalive=30)
    client.loop_start()
    try:
        if not connected.wait(timeout):
            raise TimeoutError(f"MQTT broker did not accept the connection within {timeout:g} s")
        if refused:
            raise ConnectionError(f"MQTT broker refused the connection: {refused[0]}")
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise TimeoutError(f"MQTT broker did not acknowledge within {timeout:g} s")
    finally:
        client.disconnect()
        client.loop_stop()
