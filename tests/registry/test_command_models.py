"""Models of kind ``command``: versions are command specs, never ONNX files, and are never served."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

SPEC = {
    "argv": ["python", "detect.py"],
    "env": {"THRESHOLD": "0.5"},
    "timeout_seconds": 60,
    "limits": {"cpu_seconds": 30, "memory_mb": 512, "output_bytes": 65536},
}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: nothing here depends on the dialect."""
    return f"sqlite:///{tmp_path / 'modelyard.db'}"


def test_a_command_model_is_created_with_its_first_version(client: TestClient) -> None:
    resp = client.post("/api/v1/models", json={"name": "ships", "kind": "command", "command": SPEC})
    assert resp.status_code == 201, resp.text
    model = resp.json()
    assert model["kind"] == "command" and model["latest_version"] == 1
    version = model["versions"][0]
    assert version["command"] == SPEC and version["size"] == 0 and len(version["sha256"]) == 64
    resp = client.post("/api/v1/models/ships/versions/command", json={**SPEC, "timeout_seconds": 120})
    assert resp.status_code == 201, resp.text
    assert resp.json()["version"] == 2 and resp.json()["command"]["timeout_seconds"] == 120


def test_onnx_models_stay_onnx_by_default(client: TestClient) -> None:
    assert client.post("/api/v1/models", json={"name": "plain"}).json()["kind"] == "onnx"


BAD_SPECS = [
    ({**SPEC, "env": {"MODELYARD_DATABASE_URL": "x"}}, "env"),
    ({**SPEC, "env": {"AWS_SECRET_ACCESS_KEY": "x"}}, "env"),
    ({**SPEC, "argv": []}, "argv"),
    ({**SPEC, "timeout_seconds": 0}, "timeout_seconds"),
    ({**SPEC, "limits": {"memory_mb": 1}}, "memory_mb"),
    ({**SPEC, "limits": {"gpus": 1}}, "gpus"),
]


def test_a_bad_command_spec_is_422_naming_the_field_and_nothing_is_kept(client: TestClient) -> None:
    for spec, field in BAD_SPECS:
        resp = client.post("/api/v1/models", json={"name": "bad", "kind": "command", "command": spec})
        assert resp.status_code == 422, spec
        assert field in resp.text, (field, resp.text)
        assert client.get("/api/v1/models/bad").status_code == 404


def test_a_command_spec_on_an_onnx_model_is_refused(client: TestClient) -> None:
    resp = client.post("/api/v1/models", json={"name": "plain", "command": SPEC})
    assert resp.status_code == 422 and "kind 'command'" in resp.text
    client.post("/api/v1/models", json={"name": "plain"})
    resp = client.post("/api/v1/models/plain/versions/command", json=SPEC)
    assert resp.status_code == 409 and resp.json()["code"] == "wrong-model-kind"
    assert client.get("/api/v1/models/plain").json()["versions"] == []


def test_an_onnx_file_is_refused_by_a_command_model(client: TestClient, model_dir: Path) -> None:
    client.post("/api/v1/models", json={"name": "ships", "kind": "command", "command": SPEC})
    data = (model_dir / "logreg.onnx").read_bytes()
    resp = client.post("/api/v1/models/ships/versions", files={"file": ("m.onnx", data)})
    assert resp.status_code == 409 and resp.json()["code"] == "wrong-model-kind"
    assert len(client.get("/api/v1/models/ships").json()["versions"]) == 1


def test_predicting_on_a_command_model_is_a_clear_409(client: TestClient) -> None:
    client.post("/api/v1/models", json={"name": "ships", "kind": "command", "command": SPEC})
    resp = client.post("/api/v1/models/ships/predict", json={"inputs": [[1.0, 2.0]]})
    assert resp.status_code == 409
    body = resp.json()
    assert body["code"] == "wrong-model-kind" and "predicting needs a 'onnx' model" in body["detail"]
    resp = client.post("/v2/models/ships/infer", json={"inputs": []})
    assert resp.status_code == 409
