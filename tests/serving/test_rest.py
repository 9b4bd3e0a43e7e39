"""REST predictions, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson
import pytest
from fastapi.testclient import TestClient

from modelyard.app import create_app
from modelyard.settings import Settings
from tests.conftest import ADMIN_KEY, push_model
from tests.jobs.test_api import wait_final


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


@pytest.fixture
def async_client(settings: Settings, model_dir: Path) -> Iterator[TestClient]:
    """An app whose predictions over 50 rows become jobs, with its in-process worker running them."""
    tuned = settings.model_copy(update={"predict_async_rows": 50, "worker": True})
    with TestClient(create_app(tuned), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        push_model(c, model_dir / "logreg.onnx", "churn")
        push_model(c, model_dir / "image.onnx", "image")
        yield c


def test_prediction_over_the_row_threshold_becomes_a_job_answered_202(
    async_client: TestClient, model_dir: Path
) -> None:
    x = np.random.default_rng(3).normal(size=(51, 20)).astype(np.float32)
    resp = async_client.post("/api/v1/models/churn/predict", json={"rows": x.tolist()})
    assert resp.status_code == 202, resp.text
    job = resp.json()
    assert resp.headers["location"] == f"/api/v1/jobs/{job['id']}"
    assert (job["model"], job["version"], job["input"]["kind"]) == ("churn", 1, "inline")
    assert job["progress"]["total_rows"] == 51
    done = wait_final(async_client, job["id"])
    assert done["state"] == "succeeded"
    results = async_client.get(f"/api/v1/jobs/{job['id']}/results?format=jsonl").text.splitlines()
    labels = [orjson.loads(line)["label"] for line in results]
    assert labels == _reference(model_dir / "logreg.onnx", x)[0].tolist()


def test_prediction_at_the_threshold_is_answered_at_once(async_client: TestClient) -> None:
    rows = np.zeros((50, 20)).tolist()
    assert async_client.post("/api/v1/models/churn/predict", json={"rows": rows}).status_code == 200
    named = {"inputs": {"X": np.zeros((51, 20)).tolist()}}
    assert async_client.post("/api/v1/models/churn/predict", json=named).status_code == 202


def test_prefer_respond_async_makes_even_one_row_a_job(async_client: TestClient) -> None:
    prefer = {"Prefer": "respond-async"}
    one = async_client.post("/api/v1/models/churn/predict", json={"rows": [[0.0] * 20]}, headers=prefer)
    assert one.status_code == 202 and one.headers["location"].startswith("/api/v1/jobs/")
    assert one.headers["preference-applied"] == "respond-async"
    # a model a job cannot run (its input is not rows x features) is answered at once all the same
    image = {"inputs": {"image": np.zeros((1, 3, 224, 224)).tolist()}}
    assert async_client.post("/api/v1/models/image/predict", json=image, headers=prefer).status_code == 200
