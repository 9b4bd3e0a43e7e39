"""API keys and scopes."""

from __future__ import annotations

from fastapi.testclient import TestClient

from modelyard.settings import Settings


def test_health_docs_and_metrics_need_no_key(client: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/docs", "/openapi.json", "/metrics"):
        assert client.get(path, headers={"Authorization": ""}).status_code == 200, path


def test_write_without_key_is_401_problem(client: TestClient) -> None:
    resp = client.post("/api/v1/models", json={"name": "x"}, headers={"Authorization": ""})
    assert resp.status_code == 401
    assert resp.json()["code"] == "unauthorized"
    assert resp.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/v1/models").json()["total"] == 0


def test_unknown_key_is_401(client: TestClient) -> None:
    resp = client.get("/api/v1/models", headers={"Authorization": "Bearer nope"})
    assert resp.status_code == 401


def test_scopes_are_enforced_and_x_api_key_works(client: TestClient) -> None:
    created = client.post("/api/v1/keys", json={"name": "reader", "scopes": ["read"]})
    assert created.status_code == 201
    secret = created.json()["key"]
    reader = {"Authorization": "", "X-API-Key": secret}
    assert client.get("/api/v1/models", headers=reader).status_code == 200
    denied = client.post("/api/v1/models", json={"name": "x"}, headers=reader)
    assert denied.status_code == 403
    assert "'write'" in denied.json()["detail"]
    assert client.get("/api/v1/models").json()["total"] == 0


def test_keys_are_stored_hashed_and_revocable(client: TestClient, settings: Settings) -> None:
    secret = client.post("/api/v1/keys", json={"name": "w", "scopes": ["write"]}).json()["key"]
    listed = client.get("/api/v1/keys").json()
    assert secret not in str(listed)
    auth = {"Authorization": f"Bearer {secret}"}
    assert client.post("/api/v1/models", json={"name": "ok"}, headers=auth).status_code == 201
    assert client.delete(f"/api/v1/keys/{listed[0]['id']}").status_code == 204
    assert client.post("/api/v1/models", json={"name": "no"}, headers=auth).status_code == 401


def test_creating_key_needs_admin_and_valid_scopes(client: TestClient) -> None:
    secret = client.post("/api/v1/keys", json={"name": "w", "scopes": ["write"]}).json()["key"]
    resp = client.post(
        "/api/v1/keys", json={"name": "x", "scopes": ["read"]}, headers={"Authorization": f"Bearer {secret}"}
    )
    assert resp.status_code == 403
    bad = client.post("/api/v1/keys", json={"name": "x", "scopes": ["root"]})
    assert bad.status_code == 400
    assert bad.json()["field"] == "scopes"
