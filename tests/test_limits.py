"""Request body limits: 413 as soon as a body is known to be over its route's limit, before parsing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from modelyard.app import create_app
from modelyard.limits import body_limits, request_class
from modelyard.settings import Settings
from modelyard.uploads import FIELD_LIMIT
from tests.conftest import ADMIN_KEY, push_model, sqlite_only

pytestmark = sqlite_only  # request bodies are refused before any query

LIMIT = 4096


@pytest.fixture
def small(settings: Settings) -> Iterator[TestClient]:
    """A client of an app whose JSON routes take at most ``LIMIT`` bytes."""
    app = create_app(settings.model_copy(update={"max_json_body_bytes": LIMIT}))
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        yield c


def _chunks(total: int, size: int = 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("POST", "/api/v1/pipelines", "spec"),
        ("POST", "/api/v1/models/iris/versions", "model"),
        ("POST", "/api/v1/jobs/upload", "batch"),
        ("POST", "/api/v1/inferrers/palette", "image"),
        ("POST", "/v2/models/iris/infer", "tensor"),
        ("POST", "/v2/models/iris/versions/2/infer", "tensor"),
        ("POST", "/api/v1/models/iris/predict", "json"),
        ("POST", "/api/v1/jobs", "json"),
        ("POST", "/api/v1/pipelines/looks/events", "json"),
        ("POST", "/api/v1/models", "json"),
        ("PATCH", "/api/v1/models/iris", "json"),
        ("POST", "/v2/repository/index", "json"),
    ],
)
def test_each_route_falls_in_its_limit_class(method: str, path: str, kind: str) -> None:
    assert request_class(method, path) == kind


def test_limits_come_from_the_settings_with_room_for_multipart_envelopes() -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    limits = body_limits(s)
    assert limits["json"] == s.max_json_body_bytes
    assert limits["spec"] == s.pipeline_spec_max_bytes
    assert limits["tensor"] == s.max_request_bytes
    assert limits["model"] == s.max_upload_bytes + FIELD_LIMIT
    assert limits["batch"] == s.max_batch_file_bytes + FIELD_LIMIT
    assert limits["image"] == s.fetch_max_bytes + FIELD_LIMIT


def test_json_body_over_its_declared_length_is_413_problem(small: TestClient) -> None:
    resp = small.post(
        "/api/v1/jobs", content=b"{" + b" " * LIMIT + b"}", headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 413
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["code"] == "payload-too-large" and str(LIMIT) in resp.json()["detail"]


def test_streamed_body_is_413_once_it_passes_the_limit(small: TestClient) -> None:
    resp = small.post(
        "/api/v1/pipelines/looks/events",
        content=_chunks(LIMIT * 4),
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 413
    assert resp.json()["code"] == "payload-too-large"


def test_v2_routes_answer_413_with_the_v2_error_body(small: TestClient) -> None:
    resp = small.post("/v2/repository/index", content=_chunks(LIMIT * 2))
    assert resp.status_code == 413
    assert set(resp.json()) == {"error"}


def test_body_under_the_limit_reaches_the_route(small: TestClient) -> None:
    resp = small.post("/api/v1/jobs", json={"model": "nope", "rows": [[1.0, 2.0]]})
    assert resp.status_code == 404  # the route ran: the model does not exist


def test_uploads_are_held_to_their_own_caps_not_the_json_limit(small: TestClient) -> None:
    resp = small.post(
        "/api/v1/models/nope/versions",
        content=b"x" * (LIMIT * 4),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert resp.status_code == 404


def test_prediction_fast_path_applies_its_own_limit(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"max_request_bytes": LIMIT}))
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        streamed = c.post("/v2/models/nope/infer", content=_chunks(LIMIT * 2))
        declared = c.post("/api/v1/models/nope/predict", content=b"[" + b" " * LIMIT + b"]")
    assert streamed.status_code == 413 and set(streamed.json()) == {"error"}
    assert declared.status_code == 413 and declared.json()["code"] == "payload-too-large"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/jobs/a%00b"),
        ("GET", "/api/v1/jobs?model=a%00b"),
        ("GET", "/api/v1/models/a%00b"),
        ("GET", "/api/v1/pipelines/a%00b"),
        ("GET", "/api/v1/events/a%00b"),
        ("POST", "/api/v1/models/a%00b/predict"),
        ("POST", "/v2/models/a%00b/infer"),
        ("POST", "/v2/models/iris/versions/1%00/infer"),
    ],
)
def test_url_holding_a_nul_character_is_400_not_a_database_error(
    client: TestClient, method: str, path: str
) -> None:
    resp = client.request(method, path, json={"rows": [[1.0]]} if method == "POST" else None)
    assert resp.status_code == 400, resp.text
    assert "NUL" in (resp.json().get("error") or resp.json()["detail"])


def test_json_of_predictions_is_held_to_the_json_limit_binary_tensors_are_not(
    settings: Settings, model_dir: Path
) -> None:
    app = create_app(settings.model_copy(update={"max_json_body_bytes": LIMIT}))
    rows = np.zeros((200, 20), np.float32)  # 16,000 bytes of tensor, about as much again as JSON
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        push_model(c, model_dir / "logreg.onnx", "logreg")
        rest = c.post("/api/v1/models/logreg/predict", json={"rows": rows.tolist()})
        v2_json = c.post(
            "/v2/models/logreg/infer",
            json={
                "inputs": [
                    {"name": "X", "datatype": "FP32", "shape": [200, 20], "data": rows.ravel().tolist()}
                ]
            },
        )
        header = orjson.dumps(
            {
                "inputs": [
                    {
                        "name": "X",
                        "datatype": "FP32",
                        "shape": [200, 20],
                        "parameters": {"binary_data_size": rows.nbytes},
                    }
                ]
            }
        )
        binary = c.post(
            "/v2/models/logreg/infer",
            content=header + rows.tobytes(),
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
    assert rest.status_code == 413 and str(LIMIT) in rest.json()["detail"]
    assert v2_json.status_code == 413 and "binary" in v2_json.json()["error"]
    assert binary.status_code == 200, binary.text
