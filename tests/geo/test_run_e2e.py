"""End to end, as a user would: a real server with its worker; an AOI fed by a command model (a small
script that reads the item, writes GeoJSON and reports a label item to its callback URL with its token);
a real-looking eo item posted; the run happens on the worker, the label item comes back, the prediction
is listed and the summary counts it, while a webhook receiver gets the model's events signed and in order
and a client of the topic's server-sent events sees the same; a failing command's run fails with its
logs; a posted scene's run starts at once, not at the worker's next poll."""

from __future__ import annotations

import hashlib
import hmac
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from modelyard.app import create_app
from modelyard.context import AppContext
from modelyard.durable import log
from modelyard.geo.dispatch import RUN_QUEUE
from modelyard.settings import Settings
from tests.conftest import ADMIN_KEY, LiveServer
from tests.geo.conftest import s2_item, square
from tests.geo.runs_helpers import COMMAND
from tests.notify.conftest import Receiver

DEADLINE_S = 90.0
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
# what a model's subscribers are told of a run that reports its labels, in order
TOLD = ["run.queued", "run.started", "results.available", "run.succeeded"]


@contextmanager
def serve(tmp_path: Path, **changes: Any) -> Iterator[tuple[LiveServer, httpx.Client]]:
    """A live server with its worker on a fresh SQLite database (``changes``: settings)."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'modelyard.db'}",
        admin_key=ADMIN_KEY,
        log_to_file=False,
        worker=True,
        _env_file=None,  # type: ignore[call-arg]
        **{"geo_run_poll_seconds": 0.1, **changes},
    )
    app = create_app(settings)
    live = LiveServer(app)
    settings.run_callback_base_url = live.url  # the port is known once the server has one
    with live, httpx.Client(base_url=live.url, headers=AUTH) as client:
        client.app = app  # type: ignore[attr-defined]
        yield live, client


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[LiveServer, httpx.Client]]:
    with serve(tmp_path) as found:
        yield found


def until(client: httpx.Client, run_id: int, states: set[str], seconds: float = DEADLINE_S) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}").json()
        if run["state"] in states:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not reach {states}: {run}")


def model(client: httpx.Client, name: str, mode: str) -> None:
    spec = {"argv": [sys.executable, str(COMMAND)], "env": {"MODE": mode}, "timeout_seconds": 60}
    resp = client.post("/api/v1/models", json={"name": name, "kind": "command", "command": spec})
    assert resp.status_code == 201, resp.text
    aoi = {"name": f"{name} port", "geometry": square(5.2, 45.2, 0.5), "target_resolution": 10, "model": name}
    assert client.post("/api/v1/aois", json=aoi).status_code == 201


def test_an_eo_item_posted_runs_the_command_model_and_its_labels_come_back(
    server: tuple[LiveServer, httpx.Client],
) -> None:
    _, client = server
    model(client, "ships", "ok")
    model(client, "broken", "fail")
    model(client, "by-cli", "cli")
    posted = client.post("/api/v1/scenes", json=s2_item())
    assert posted.status_code == 201, posted.text
    matches = {m["model"]: m["run_id"] for m in posted.json()["scenes"][0]["matches"]}
    assert set(matches) == {"ships", "broken", "by-cli"}

    run = until(client, matches["ships"], {"succeeded", "failed"})
    logs = client.get(f"/api/v1/runs/{run['id']}/logs").json()
    assert run["state"] == "succeeded", (run, logs)
    assert "first report: 201" in logs["stdout"] and "second report: 409" in logs["stdout"]
    assert run["prediction_id"] is not None

    (item,) = client.get("/api/v1/predictions", params={"model": "ships"}).json()["features"]
    assert item["properties"]["label:classes"] == [{"name": "class", "classes": ["ship", "wake"]}]
    geojson = client.get(item["assets"]["labels"]["href"]).json()
    assert [f["properties"]["class"] for f in geojson["features"]] == ["ship", "ship", "ship", "wake"]
    summary = client.get("/api/v1/models/ships/summary").json()
    assert summary["runs"] == {"succeeded": 1} and summary["classes"] == {"ship": 3, "wake": 1}
    assert summary["labelled_area_m2"] > 0

    failed = until(client, matches["broken"], {"succeeded", "failed"})
    assert failed["state"] == "failed" and "model weights are corrupt" in failed["error"]
    assert "model weights are corrupt" in client.get(f"/api/v1/runs/{failed['id']}/logs").json()["stderr"]

    by_cli = until(client, matches["by-cli"], {"succeeded", "failed"})
    cli_logs = client.get(f"/api/v1/runs/{by_cli['id']}/logs").json()
    assert by_cli["state"] == "succeeded", (by_cli, cli_logs)
    assert "4 features" in cli_logs["stdout"]

    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    with ctx.uow() as session:
        topics = [e.topic for e in log.read(session, prefixes=["geo."], subject="ships")]
    assert topics == ["geo.run.queued", "geo.run.started", "geo.results.available", "geo.run.succeeded"]


class TopicStream:
    """A client of a topic's server-sent events, reading in a thread from the moment it is connected."""

    def __init__(self, url: str, count: int) -> None:
        self.url, self.count = url, count
        self.messages: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        with httpx.stream("GET", self.url, headers=AUTH, timeout=DEADLINE_S) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            self.connected.set()
            current: dict[str, Any] = {}
            for line in resp.iter_lines():
                if line.startswith(":"):
                    continue
                if line:
                    name, _, value = line.partition(": ")
                    current[name] = orjson.loads(value) if name == "data" else value
                    continue
                if current:
                    self.messages.append(current)
                    current = {}
                if len(self.messages) == self.count:
                    return

    def __enter__(self) -> TopicStream:
        self.thread.start()
        assert self.connected.wait(10), "the topic's event stream did not answer"
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(DEADLINE_S)


def eventually(check: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def test_a_posted_item_runs_the_model_and_its_subscribers_are_told_in_order_signed(
    tmp_path: Path, receiver: Receiver
) -> None:
    fast = {"allow_private_urls": True, "notify_poll_seconds": 0.05, "event_log_poll_seconds": 0.05}
    with serve(tmp_path, **fast) as (live, client):
        model(client, "ships", "ok")
        hook = client.post(
            "/api/v1/topics/ships/subscriptions", json={"kind": "webhook", "url": receiver.url}
        )
        assert hook.status_code == 201, hook.text
        secret = hook.json()["secret"]
        with TopicStream(f"{live.url}/api/v1/topics/ships/events", len(TOLD)) as stream:
            posted = client.post("/api/v1/scenes", json=s2_item())
            assert posted.status_code == 201, posted.text
            [match] = posted.json()["scenes"][0]["matches"]
            run = until(client, match["run_id"], {"succeeded", "failed"})
            assert run["state"] == "succeeded", client.get(f"/api/v1/runs/{run['id']}/logs").json()
        assert [m["event"] for m in stream.messages] == TOLD, stream.messages

        # the label item came back and the summary counts it
        (item,) = client.get("/api/v1/predictions", params={"model": "ships"}).json()["features"]
        assert item["id"] and run["prediction_id"] is not None
        summary = client.get("/api/v1/models/ships/summary").json()
        assert summary["runs"] == {"succeeded": 1} and summary["classes"] == {"ship": 3, "wake": 1}

        log_url = f"/api/v1/topics/ships/subscriptions/{hook.json()['id']}/deliveries"

        def delivered() -> bool:
            found = client.get(log_url).json()
            return found["total"] == len(TOLD) and {d["state"] for d in found["items"]} == {"delivered"}

        eventually(delivered, f"not all delivered: {client.get(log_url).json()}")
    calls = receiver.received()
    bodies = [call.json() for call in calls]
    assert [b["type"] for b in bodies] == TOLD  # in order, each once
    for call, body in zip(calls, bodies, strict=True):
        stamp = call.headers["X-Modelyard-Timestamp"]
        expected = hmac.new(secret.encode(), f"{stamp}.".encode() + call.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(call.headers["X-Modelyard-Signature"], expected)
        assert abs(time.time() - int(stamp)) <= 300
        assert call.headers["X-Modelyard-Event-Id"] == body["id"]
        assert body["model"] == "ships" and body["data"]["run_id"] == run["id"]
    assert bodies[2]["data"]["prediction_id"] == run["prediction_id"]
    # the stream saw the very same events: same ids, same bodies, same order
    assert [m["id"] for m in stream.messages] == [b["id"] for b in bodies]
    assert [m["data"] for m in stream.messages] == bodies


def test_a_posted_scene_starts_its_run_at_once_not_at_the_next_poll(tmp_path: Path) -> None:
    poll = 120.0
    with serve(tmp_path, geo_run_poll_seconds=poll) as (_, client):
        ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
        # the worker's loop is up and has looked once (it looks again in `poll` seconds, unless woken)
        eventually(lambda: RUN_QUEUE in ctx.claim_loops, "the geo-run loop did not start")
        model(client, "ships", "ok")
        began = time.monotonic()
        posted = client.post("/api/v1/scenes", json=s2_item())
        assert posted.status_code == 201, posted.text
        [match] = posted.json()["scenes"][0]["matches"]
        until(client, match["run_id"], {"running", "succeeded", "failed"}, seconds=poll / 4)
        assert time.monotonic() - began < poll / 4
        assert until(client, match["run_id"], {"succeeded", "failed"})["state"] == "succeeded"
