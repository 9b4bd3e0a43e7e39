"""A topic's server-sent events over a real socket: only the model's topic events, named by type, with
the log id as id; a reconnect with ``Last-Event-ID`` gets exactly what it missed."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from modelyard.app import create_app
from modelyard.context import AppContext
from modelyard.registry import service as registry
from modelyard.registry.schemas import ModelCreate
from modelyard.settings import Settings
from tests.conftest import ADMIN_KEY, LiveServer
from tests.durable.test_log import sse_messages
from tests.notify.conftest import emit, sqlite_only

pytestmark = sqlite_only
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def server(notify_settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(create_app(notify_settings)) as live:
        ctx: AppContext = live.server.config.app.state.ctx
        with ctx.uow() as session:
            for name in ("roofs", "ships"):
                registry.create_model(session=session, data=ModelCreate(name=name))
        yield live


def test_the_stream_carries_the_models_events_and_resumes_after_last_event_id(server: LiveServer) -> None:
    ctx: AppContext = server.server.config.app.state.ctx
    url = f"{server.url}/api/v1/topics/roofs/events"
    with httpx.stream("GET", url, headers=AUTH, timeout=10) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        queued = emit(ctx, "geo.run.queued", "roofs", run_id="r1")
        emit(ctx, "geo.run.queued", "ships", run_id="s1")
        emit(ctx, "jobs.queued", "roofs")
        done = emit(ctx, "geo.results.available", "roofs", run_id="r1")
        messages = sse_messages(resp.iter_lines(), 2)
    assert [(m["id"], m["event"]) for m in messages] == [
        (str(queued), "run.queued"),
        (str(done), "results.available"),
    ]
    assert messages[1]["data"]["model"] == "roofs" and messages[1]["data"]["data"]["run_id"] == "r1"
    changed = emit(ctx, "registry.metadata.changed", "roofs", metadata={})
    resumed = {**AUTH, "Last-Event-ID": str(queued)}
    with httpx.stream("GET", url, headers=resumed, params={"events": "metadata.changed"}, timeout=10) as resp:
        [missed] = sse_messages(resp.iter_lines(), 1)
    assert (missed["id"], missed["event"]) == (str(changed), "metadata.changed")


def test_a_stream_of_an_unknown_model_is_404(server: LiveServer) -> None:
    resp = httpx.get(f"{server.url}/api/v1/topics/nope/events", headers=AUTH, timeout=10)
    assert (resp.status_code, resp.json()["code"]) == (404, "model-not-found")
