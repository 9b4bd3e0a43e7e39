"""The model's notifications page: its subscriptions and how their deliveries went."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from modelyard.app import create_app
from modelyard.settings import Settings
from tests.notify.conftest import Receiver, emit, eventually
from tests.web.conftest import api_headers, sign_in


@pytest.fixture
def ui(ui_settings: Settings) -> Iterator[TestClient]:
    allowed = ui_settings.model_copy(update={"allow_private_urls": True, "notify_poll_seconds": 0.02})
    with TestClient(create_app(allowed), follow_redirects=False) as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(status=500)
    yield found
    found.close()


def test_the_page_lists_subscriptions_and_their_deliveries(ui: TestClient, receiver: Receiver) -> None:
    hook = {"kind": "webhook", "url": receiver.url, "events": ["run.failed"]}
    made = ui.post("/api/v1/topics/demo-iris/subscriptions", json=hook, headers=api_headers())
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    emit(ui.app.state.ctx, "geo.run.failed", "demo-iris", run_id="r1")  # type: ignore[attr-defined]
    eventually(lambda: receiver.received())
    sign_in(ui)
    html = eventually(
        lambda: p if "HTTP 500: nope" in (p := ui.get("/ui/models/demo-iris/topic").text) else None,
        timeout=30,
    )
    assert receiver.url in html and "run.failed" in html and secret not in html
    assert 'href="/ui/models/demo-iris/topic"' in ui.get("/ui/models/demo-iris").text
    reader = ui.post("/api/v1/keys", json={"name": "r", "scopes": ["read"]}, headers=api_headers()).json()
    ui.cookies.clear()
    sign_in(ui, reader["key"])
    refused = ui.get("/ui/models/demo-iris/topic")
    assert refused.status_code == 403 and "write" in refused.text
