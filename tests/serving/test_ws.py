"""WebSocket streaming predictions against a real server socket."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.conftest import ADMIN_KEY, LiveServer, push_model, sqlite_only

pytestmark = sqlite_only  # the socket protocol; registry reads run on both databases in test_rest


@pytest.fixture
def served(client: TestClient, model_dir: Path, live_server: LiveServer) -> str:
    push_model(client, model_dir / "mlp.onnx", "mlp", {"max_batch_size": 16, "max_queue_delay_ms": 5})
    return live_server.url.replace("http", "ws") + "/api/v1/models/mlp/stream"


def test_stream_answers_each_request_tagged_with_its_id(served: str) -> None:
    rng = np.random.default_rng(0)
    xs = {f"r{i}": rng.normal(size=(1, 64)).astype(np.float32) for i in range(20)}
    with connect(served, additional_headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as ws:
        for rid, x in xs.items():
            ws.send(json.dumps({"id": rid, "rows": x.tolist()}))
        answers = {}
        for _ in xs:
            reply = json.loads(ws.recv(timeout=10))
            answers[reply["id"]] = reply
    assert set(answers) == set(xs)
    # the same rows sent one at a time give the same outputs whichever batch they rode in
    a, b = answers["r3"]["outputs"]["y"], answers["r7"]["outputs"]["y"]
    assert a != b
    assert len(a) == 1 and len(a[0]) == 10


def test_stream_reports_errors_per_message_and_stays_open(served: str) -> None:
    with connect(served + f"?api_key={ADMIN_KEY}") as ws:
        ws.send(json.dumps({"id": "bad", "rows": [[1.0, 2.0]]}))
        bad = json.loads(ws.recv(timeout=10))
        ws.send("not json")
        garbled = json.loads(ws.recv(timeout=10))
        ws.send(json.dumps({"id": "good", "rows": [[0.0] * 64]}))
        good = json.loads(ws.recv(timeout=10))
    assert bad["id"] == "bad" and bad["error"]["status"] == 400 and bad["error"]["field"] == "inputs.x"
    assert garbled["id"] is None and garbled["error"]["code"] == "bad-request"
    assert good["id"] == "good" and good["version"] == 1


def test_stream_without_key_is_refused(served: str) -> None:
    with pytest.raises(InvalidStatus) as info, connect(served):
        pass
    assert info.value.response.status_code == 403
