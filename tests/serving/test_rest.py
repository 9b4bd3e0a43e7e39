"""REST predictions, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from tests.conftest import push_model


@pytest.fixture
def logreg(client: TestClient, model_dir: Path) -> Path:
    cols = [f"f{i}" for i in range(20)]
    push_model(client, model_dir / "logreg.onnx", "churn", {"columns": cols})
    return model_dir / "logreg.onnx"


def _reference(path: Path, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return list(sess.run(None, {"X": x}))


def test_predict_rows_matches_raw_onnxruntime(client: TestClient, logreg: Path) -> None:
    x = np.random.default_rng(1).normal(size=(3, 20)).astype(np.float32)
    resp = client.post("/api/v1/models/churn/predict", json={"rows": x.tolist()})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    label, proba = _reference(logreg, x)
    assert body["outputs"]["label"] == label.tolist()
    np.testing.assert_allclose(body["outputs"]["probabilities"], proba, rtol=1e-6)
    assert body["version"] == 1


def test_predict_rows_as_objects_uses_metadata_column_order(client: TestClient, logreg: Path) -> None:
    x = np.arange(20, dtype=np.float32).reshape(1, 20) / 10
    as_objects = [{f"f{i}": float(x[0, i]) for i in reversed(range(20))}]
    by_object = client.post("/api/v1/models/churn/predict", json={"rows": as_objects}).json()
    by_list = client.post("/api/v1/models/churn/predict", json={"rows": x.tolist()}).json()
    assert by_object["outputs"] == by_list["outputs"]


def test_predict_named_inputs_on_a_version(client: TestClient, logreg: Path) -> None:
    x = np.ones((2, 20), np.float32)
    resp = client.post("/api/v1/models/churn/versions/1/predict", json={"inputs": {"X": x.tolist()}})
    assert resp.status_code == 200
    assert resp.json()["outputs"]["label"] == _reference(logreg, x)[0].tolist()


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"rows": [[1.0] * 19]}, "inputs.X", "shape [1, 19]"),
        ({"inputs": {"Y": [[1.0] * 20]}}, "inputs.Y", "unknown input"),
        ({"inputs": {}}, "inputs", "missing input"),
        ({"rows": [["a"] * 20]}, "rows", "not a regular numeric table"),
        ({"rows": [], "inputs": {}}, "inputs", "exactly one of"),
    ],
)
def test_predict_rejects_bad_inputs_with_400(
    client: TestClient, logreg: Path, body: dict, field: str, fragment: str
) -> None:
    resp = client.post("/api/v1/models/churn/predict", json=body)
    assert resp.status_code == 400, resp.text
    problem = resp.json()
    assert problem["field"] == field
    assert fragment in problem["detail"]
    assert resp.headers["content-type"] == "application/problem+json"


def test_predict_unknown_model_is_404(client: TestClient) -> None:
    resp = client.post("/api/v1/models/nope/predict", json={"rows": [[1.0]]})
    assert resp.status_code == 404
    assert resp.json()["code"] == "model-not-found"


def test_predict_body_over_cap_is_413(client: TestClient, logreg: Path) -> None:
    client.app.state.ctx.settings.max_request_bytes = 100  # type: ignore[attr-defined]
    resp = client.post("/api/v1/models/churn/predict", json={"rows": [[1.0] * 20] * 10})
    assert resp.status_code == 413


def test_prediction_is_counted_in_metrics(client: TestClient, logreg: Path) -> None:
    client.post("/api/v1/models/churn/predict", json={"rows": [[0.0] * 20]})
    text = client.get("/metrics").text
    assert 'modelyard_predictions_total{model="churn",transport="rest",version="1"} 1.0' in text
    assert "modelyard_loaded_models 1.0" in text
    assert 'route="/api/v1/models/{name}/predict"' in text


def test_new_version_is_served_after_push(client: TestClient, model_dir: Path, logreg: Path) -> None:
    assert client.post("/api/v1/models/churn/predict", json={"rows": [[0.0] * 20]}).json()["version"] == 1
    push_model(client, model_dir / "logreg.onnx", "churn")
    assert client.post("/api/v1/models/churn/predict", json={"rows": [[0.0] * 20]}).json()["version"] == 2
