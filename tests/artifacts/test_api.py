"""``/api/v1/artifacts``: put, download, list and delete files of the artifact store."""

from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient

from modelyard.app import create_app
from modelyard.settings import Settings
from tests.conftest import ADMIN_KEY, sqlite_only

pytestmark = sqlite_only  # the artifact store holds files, not rows


def test_put_then_get_list_and_delete(client: TestClient) -> None:
    data = b"a,b\n1,2\n" * 1000
    put = client.put("/api/v1/artifacts/batches/flowers.csv", content=data)
    assert put.status_code == 201, put.text
    assert put.json() == {
        "key": "batches/flowers.csv",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    got = client.get("/api/v1/artifacts/batches/flowers.csv")
    assert (got.status_code, got.content) == (200, data)
    client.put("/api/v1/artifacts/other/x.txt", content=b"x")
    listed = client.get("/api/v1/artifacts", params={"prefix": "batches/"}).json()
    assert [i["key"] for i in listed["items"]] == ["batches/flowers.csv"]
    assert [i["key"] for i in client.get("/api/v1/artifacts", params={"prefix": "bat"}).json()["items"]] == [
        "batches/flowers.csv"
    ]
    assert client.delete("/api/v1/artifacts/batches/flowers.csv").status_code == 204
    assert client.get("/api/v1/artifacts/batches/flowers.csv").status_code == 404
    assert client.delete("/api/v1/artifacts/batches/flowers.csv").status_code == 404


def test_put_accepts_a_multipart_file_part(client: TestClient) -> None:
    resp = client.put("/api/v1/artifacts/in/rows.csv", files={"file": ("rows.csv", b"1,2\n", "text/csv")})
    assert resp.status_code == 201
    assert client.get("/api/v1/artifacts/in/rows.csv").content == b"1,2\n"


@pytest.mark.parametrize(
    "key", ["a/%2E%2E/%2E%2E/etc/passwd", "%2E%2E/x", "a//b", "%2E/x", "a%5Cb", ".~tmp.x"]
)  # percent-encoded, so the HTTP client sends the dots and backslashes as they are
def test_put_refuses_keys_that_leave_the_store(client: TestClient, key: str) -> None:
    resp = client.put(f"/api/v1/artifacts/{key}", content=b"x")
    assert (resp.status_code, resp.json()["field"]) == (400, "key")
    assert client.get("/api/v1/artifacts").json()["items"] == []


@pytest.mark.parametrize("key", ["models/demo/1/model.onnx", "jobs/x/input.npy", "pipelines/p/s/e.json"])
def test_put_and_delete_refuse_modelyards_own_keys(client: TestClient, key: str) -> None:
    put = client.put(f"/api/v1/artifacts/{key}", content=b"x")
    assert (put.status_code, put.json()["field"]) == (400, "key")
    assert client.delete(f"/api/v1/artifacts/{key}").status_code == 400


def test_put_over_the_size_cap_is_413_and_leaves_nothing(settings: Settings) -> None:
    small = settings.model_copy(update={"max_artifact_bytes": 10})
    with TestClient(create_app(small), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        resp = c.put("/api/v1/artifacts/in/big.bin", content=b"x" * 11)
        assert (resp.status_code, resp.json()["code"]) == (413, "payload-too-large")
        assert c.get("/api/v1/artifacts").json()["items"] == []
    assert list((settings.data_dir / "tmp").iterdir()) == []


def test_writes_need_the_write_scope_and_reads_the_read_scope(client: TestClient) -> None:
    reader = client.post("/api/v1/keys", json={"name": "r", "scopes": ["read"]}).json()["key"]
    as_reader = {"Authorization": f"Bearer {reader}"}
    assert client.put("/api/v1/artifacts/in/a.txt", content=b"a").status_code == 201
    assert client.put("/api/v1/artifacts/in/b.txt", content=b"b", headers=as_reader).status_code == 403
    assert client.delete("/api/v1/artifacts/in/a.txt", headers=as_reader).status_code == 403
    assert client.get("/api/v1/artifacts/in/a.txt", headers=as_reader).content == b"a"
    assert client.get("/api/v1/artifacts/in/a.txt", headers={"Authorization": ""}).status_code == 401


def test_a_put_file_is_a_job_input(client: TestClient) -> None:
    client.put("/api/v1/artifacts/batches/none.csv", content=b"1,2\n")
    job = client.post("/api/v1/jobs", json={"model": "nope", "uri": "batches/none.csv"})
    assert job.json()["code"] == "model-not-found"  # the file was found; the model is what is missing
