"""The composition root's own answers: unknown routes and methods, ``/``, the documentation pages,
and the access log."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from modelyard.app import create_app
from modelyard.settings import Settings
from tests.conftest import ADMIN_KEY, sqlite_only

pytestmark = sqlite_only  # routing, docs and the access log


def test_unknown_route_is_a_not_found_problem(client: TestClient) -> None:
    resp = client.get("/api/v1/nope")
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["code"] == "not-found"
    assert resp.json()["instance"] == "/api/v1/nope"


def test_wrong_method_is_a_method_not_allowed_problem_with_allow(client: TestClient) -> None:
    resp = client.put("/api/v1/models")
    assert resp.status_code == 405
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["code"] == "method-not-allowed"
    assert "POST" in resp.headers["allow"]


def test_unknown_v2_route_answers_the_protocols_error(client: TestClient) -> None:
    resp = client.get("/v2/nope")
    assert resp.status_code == 404
    assert set(resp.json()) == {"error"}


def test_root_redirects_to_the_dashboard(client: TestClient) -> None:
    resp = client.get("/", follow_redirects=False)
    assert (resp.status_code, resp.headers["location"]) == (307, "/ui/")


def test_docs_pages_load_their_assets_from_the_server_itself(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assert "cdn.jsdelivr.net" not in html and "fonts.googleapis.com" not in html, page
        assert "/static/" in html, page
    for asset in (
        "/static/swagger-ui/swagger-ui-bundle.js",
        "/static/swagger-ui/swagger-ui.css",
        "/static/redoc/redoc.standalone.js",
    ):
        assert client.get(asset).status_code == 200, asset
    assert client.get("/docs/oauth2-redirect").status_code == 200


def _access_lines(settings: Settings) -> list[dict[str, object]]:
    path = settings.data_dir / "logs" / "access.log"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_access_log_has_one_line_per_request_with_id_key_route_status(settings: Settings) -> None:
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        reader = c.post("/api/v1/keys", json={"name": "reader", "scopes": ["read"]}).json()["key"]
        got = c.get("/api/v1/models/iris", headers={"Authorization": f"Bearer {reader}"})
        tagged = c.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert got.status_code == 404
    assert tagged.headers["x-request-id"] == "abc-123"
    lines = _access_lines(settings)
    assert [(x["method"], x["route"], x["status"], x["key"]) for x in lines] == [
        ("POST", "/api/v1/keys", 201, "admin"),
        ("GET", "/api/v1/models/{name}", 404, "reader"),
        ("GET", "/healthz", 200, "admin"),
    ]
    assert lines[1]["request_id"] == got.headers["x-request-id"]
    assert lines[2]["request_id"] == "abc-123"
    assert all(isinstance(x["duration_ms"], float) for x in lines)


def test_access_log_covers_fast_path_predictions(settings: Settings, model_dir: Path) -> None:
    from tests.conftest import push_model

    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        push_model(c, model_dir / "logreg.onnx", "churn")
        body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 20], "data": [0.0] * 20}]}
        assert c.post("/v2/models/churn/infer", json=body).status_code == 200
    assert _access_lines(settings)[-1]["route"] == "/v2/models/{name}/infer"


def test_access_log_off_writes_nothing_and_sends_no_request_id(settings: Settings) -> None:
    quiet = settings.model_copy(update={"access_log": False})
    with TestClient(create_app(quiet)) as c:
        assert "x-request-id" not in c.get("/healthz").headers
    assert not (settings.data_dir / "logs" / "access.log").exists()
