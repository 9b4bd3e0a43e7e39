"""Registry routes on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from modelyard.settings import Settings
from tests.conftest import push_model
from tests.hostile import non_utf8_multipart


def _artifacts(settings: Settings) -> list[Path]:
    root = settings.data_dir / "artifacts"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_push_records_signature_sha_and_latest(client: TestClient, model_dir: Path) -> None:
    version = push_model(client, model_dir / "logreg.onnx", "churn", {"task": "classification"})
    assert version["version"] == 1
    assert version["signature"]["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 20]}]
    assert len(version["sha256"]) == 64
    push_model(client, model_dir / "logreg.onnx", "churn")
    latest = client.get("/api/v1/models/churn/versions/latest").json()
    assert latest["version"] == 2
    model = client.get("/api/v1/models/churn").json()
    assert [v["version"] for v in model["versions"]] == [1, 2]
    assert model["latest_version"] == 2


def test_create_rejects_duplicate_name_with_409(client: TestClient) -> None:
    assert client.post("/api/v1/models", json={"name": "dup"}).status_code == 201
    resp = client.post("/api/v1/models", json={"name": "dup"})
    assert resp.status_code == 409
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["code"] == "already-exists"


def test_list_filters_by_tag_and_metadata(client: TestClient) -> None:
    client.post(
        "/api/v1/models", json={"name": "a", "tags": ["vision"], "metadata": {"task": "classification"}}
    )
    client.post("/api/v1/models", json={"name": "b", "tags": ["tabular"], "metadata": {"task": "regression"}})
    names = lambda r: [m["name"] for m in r.json()["items"]]  # noqa: E731
    assert names(client.get("/api/v1/models?metadata.task=classification")) == ["a"]
    assert names(client.get("/api/v1/models?tag=tabular")) == ["b"]
    assert names(client.get("/api/v1/models")) == ["a", "b"]


def test_update_merges_metadata_and_null_removes_key(client: TestClient) -> None:
    client.post("/api/v1/models", json={"name": "m", "metadata": {"owner": "x", "task": "t"}})
    resp = client.patch("/api/v1/models/m", json={"metadata": {"owner": None, "stage": "prod"}})
    assert resp.status_code == 200
    assert resp.json()["metadata"] == {"task": "t", "stage": "prod"}


def test_delete_version_and_model_remove_artifacts(
    client: TestClient, model_dir: Path, settings: Settings
) -> None:
    push_model(client, model_dir / "logreg.onnx", "gone")
    push_model(client, model_dir / "logreg.onnx", "gone")
    assert len(_artifacts(settings)) == 2
    assert client.delete("/api/v1/models/gone/versions/1").status_code == 204
    assert len(_artifacts(settings)) == 1
    assert client.delete("/api/v1/models/gone").status_code == 204
    assert _artifacts(settings) == []
    assert client.get("/api/v1/models/gone").status_code == 404


def test_upload_rejects_file_that_is_not_onnx(client: TestClient, settings: Settings) -> None:
    client.post("/api/v1/models", json={"name": "bad"})
    resp = client.post(
        "/api/v1/models/bad/versions",
        files={"file": ("x.onnx", b"this is not a model", "application/octet-stream")},
    )
    assert resp.status_code == 422
    assert resp.json()["code"] == "invalid-model-file"
    assert "not a readable ONNX model" in resp.json()["detail"]
    assert client.get("/api/v1/models/bad").json()["versions"] == []
    assert _artifacts(settings) == []
    assert list((settings.data_dir / "tmp").iterdir()) == []


def test_upload_rejects_truncated_file(client: TestClient, model_dir: Path, settings: Settings) -> None:
    client.post("/api/v1/models", json={"name": "cut"})
    data = (model_dir / "mlp.onnx").read_bytes()
    resp = client.post("/api/v1/models/cut/versions", files={"file": ("m.onnx", data[: len(data) // 2])})
    assert resp.status_code == 422
    assert resp.json()["code"] == "invalid-model-file"
    assert client.get("/api/v1/models/cut").json()["versions"] == []
    assert _artifacts(settings) == []


def test_upload_rejects_operator_onnxruntime_cannot_run(
    client: TestClient, model_dir: Path, settings: Settings
) -> None:
    client.post("/api/v1/models", json={"name": "custom"})
    with (model_dir / "unknown_op.onnx").open("rb") as f:
        resp = client.post("/api/v1/models/custom/versions", files={"file": ("m.onnx", f)})
    assert resp.status_code == 422
    assert "onnxruntime cannot run" in resp.json()["detail"]
    assert "Frobnicate" in resp.json()["detail"]
    assert _artifacts(settings) == []


def test_upload_over_cap_is_413_and_leaves_nothing(
    client: TestClient, model_dir: Path, settings: Settings
) -> None:
    settings.max_upload_bytes = 1000
    client.post("/api/v1/models", json={"name": "big"})
    with (model_dir / "mlp.onnx").open("rb") as f:
        resp = client.post("/api/v1/models/big/versions", files={"file": ("m.onnx", f)})
    assert resp.status_code == 413
    assert resp.json()["code"] == "payload-too-large"
    assert client.get("/api/v1/models/big").json()["versions"] == []
    assert _artifacts(settings) == []
    assert list((settings.data_dir / "tmp").iterdir()) == []


def test_upload_to_unknown_model_is_404(client: TestClient, model_dir: Path) -> None:
    with (model_dir / "logreg.onnx").open("rb") as f:
        resp = client.post("/api/v1/models/nope/versions", files={"file": ("m.onnx", f)})
    assert resp.status_code == 404
    assert resp.json()["code"] == "model-not-found"


def test_unknown_version_is_404(client: TestClient, model_dir: Path) -> None:
    push_model(client, model_dir / "logreg.onnx", "one")
    resp = client.get("/api/v1/models/one/versions/7")
    assert resp.status_code == 404
    assert resp.json()["code"] == "version-not-found"


def test_registry_and_serving_on_s3_compatible_store(
    tmp_path: Path, database_url: str, s3_env: str, model_dir: Path
) -> None:
    import uuid

    from modelyard.app import create_app
    from tests.conftest import ADMIN_KEY
    from tests.s3server import BUCKET, s3_client

    prefix = uuid.uuid4().hex
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        admin_key=ADMIN_KEY,
        log_to_file=False,
        worker=False,
        storage_url=f"s3://{BUCKET}/{prefix}",
        s3_endpoint_url=s3_env,
        _env_file=None,  # type: ignore[call-arg]
    )
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        version = push_model(c, model_dir / "logreg.onnx", "remote")
        keys = [o["Key"] for o in s3_client(s3_env).list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]]
        assert keys == [f"{prefix}/models/remote/1/{version['sha256'][:16]}.onnx"]
        resp = c.post("/api/v1/models/remote/predict", json={"rows": [[0.0] * 20]})
        assert resp.status_code == 200
        assert c.delete("/api/v1/models/remote").status_code == 204
        assert "Contents" not in s3_client(s3_env).list_objects_v2(Bucket=BUCKET, Prefix=prefix)


def test_upload_with_a_multipart_field_name_that_is_not_utf8_is_400(
    client: TestClient, model_dir: Path, settings: Settings
) -> None:
    client.post("/api/v1/models", json={"name": "iris"})
    body, headers = non_utf8_multipart("m.onnx", (model_dir / "logreg.onnx").read_bytes())
    resp = client.post("/api/v1/models/iris/versions", content=body, headers=headers)
    assert resp.status_code == 400, resp.text
    assert "not UTF-8" in resp.json()["detail"]
    assert _artifacts(settings) == []


def test_upload_creating_a_model_with_a_bad_name_is_the_same_422_as_creating_it(
    client: TestClient, model_dir: Path
) -> None:
    created = client.post("/api/v1/models", json={"name": "Bad Name!"})
    uploaded = client.post(
        "/api/v1/models/Bad%20Name!/versions?create=true", content=(model_dir / "logreg.onnx").read_bytes()
    )
    assert (created.status_code, uploaded.status_code) == (422, 422)
    assert (created.json()["field"], uploaded.json()["field"]) == ("body.name", "name")
    assert created.json()["errors"][0]["detail"] == uploaded.json()["errors"][0]["detail"]
    assert client.get("/api/v1/models").json()["items"] == []
