"""Notify fixtures: settings that retry fast and reach local receivers, a context with models registered,
a real webhook receiver on loopback, topic events appended as the geo part and the registry append them,
and the NATS/MQTT servers of this machine (required under CI)."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from modelyard.app import build_context
from modelyard.context import AppContext
from modelyard.durable import log
from modelyard.registry import service as registry
from modelyard.registry.schemas import ModelCreate
from modelyard.settings import Settings
from tests.jobs.test_workflows import eventually

__all__ = ["eventually"]  # polled waits, as the jobs' workflow tests do them

NATS_URL, MQTT_URL = "nats://127.0.0.1:4222", "mqtt://127.0.0.1:1883"
MODELS = ("roofs", "ships")
# for tests where the dialect does not matter (the claims and the fan-out run on both)
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def require_server(url: str) -> None:
    """Skip (fail under CI) unless the server at ``url`` (host:port) accepts connections."""
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{url} is required under CI and unreachable: {exc}")
        pytest.skip(f"{url} is unreachable: {exc}")


@pytest.fixture
def notify_settings(settings: Settings) -> Settings:
    """``settings`` with fast retries, local URLs allowed, and this machine's NATS and MQTT servers."""
    return settings.model_copy(
        update={
            "allow_private_urls": True,
            "notify_retry_seconds": 0.05,
            "notify_max_attempts": 3,
            "notify_poll_seconds": 0.02,
            "notify_timeout_seconds": 3.0,
            "notify_nats_url": NATS_URL,
            "notify_mqtt_url": MQTT_URL,
            "event_log_poll_seconds": 0.05,
        }
    )


@pytest.fixture
def ctx(notify_settings: Settings) -> Iterator[AppContext]:
    """A context (no worker) with the models ``roofs`` and ``ships`` registered."""
    context = build_context(notify_settings)
    with context.uow() as session:
        for name in MODELS:
            registry.create_model(session=session, data=ModelCreate(name=name))
    yield context
    context.close()


def emit(ctx: AppContext, topic: str, model: str, **data: Any) -> int:
    """Append ``topic`` about ``model`` to the event log as its producer does; the event's id."""
    with ctx.uow() as session:
        log.append(session, topic, {"model": model, **data}, data.get("run_id", model))
        session.flush()
        return log.head(session)


@dataclass
class Received:
    """One request a receiver got."""

    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver on loopback that records every POST and answers ``status`` (settable)."""

    status: int = 200
    got: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # answers wait until this is set (cleared: a receiver that holds calls open)
    gate: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.gate.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.got.append(Received(dict(self.headers.items()), body))
                    status = receiver.status
                receiver.gate.wait(30)
                self.send_response(status)
                self.send_header("Content-Length", "4")
                self.end_headers()
                self.wfile.write(b"nope" if status >= 300 else b"okay")

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.got)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on a free loopback port."""
    found = Receiver()
    yield found
    found.close()
