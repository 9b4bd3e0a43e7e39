"""Collections and records: CRUD, ids unique per collection, pages with stable cursors."""

from __future__ import annotations

from typing import Any

from tests.catalog.conftest import make_collection

C = "/api/v1/collections"


def test_collection_crud_and_name_taken(api: Any) -> None:
    made = make_collection(api, "works", description="paintings")
    assert made["records"] == 0 and made["pipelines"] == []
    again = api.post(C, json={"name": "works"})
    assert again.status_code == 409 and again.json()["code"] == "already-exists"
    assert api.patch(f"{C}/works", json={"description": "art"}).json()["description"] == "art"
    assert [c["name"] for c in api.get(C).json()["items"]] == ["works"]
    assert api.delete(f"{C}/works").status_code == 204
    missing = api.get(f"{C}/works")
    assert missing.status_code == 404 and missing.json()["code"] == "collection-not-found"


def test_binding_to_a_missing_pipeline_is_404(api: Any) -> None:
    resp = api.post(C, json={"name": "works", "pipelines": ["nope"]})
    assert resp.status_code == 404 and resp.json()["code"] == "pipeline-not-found"
    assert api.get(f"{C}/works").status_code == 404  # nothing half-written


def test_record_crud_and_upsert_by_id(api: Any) -> None:
    make_collection(api)
    make_collection(api, "other")
    body = {"id": "w1", "title": "Sunflowers", "attributes": {"year": 1888, "artist": {"name": "Gogh"}}}
    created = api.post(f"{C}/works/records", json=body)
    assert created.status_code == 201
    assert created.json()["attributes"]["artist"]["name"] == "Gogh"
    assert api.post(f"{C}/other/records", json=body).status_code == 201  # ids are per collection
    replaced = api.post(f"{C}/works/records", json={**body, "title": "Sunflowers (1888)"})
    assert replaced.status_code == 200 and replaced.json()["title"] == "Sunflowers (1888)"
    patched = api.patch(f"{C}/works/records/w1", json={"description": "vase"})
    assert patched.json()["description"] == "vase" and patched.json()["title"] == "Sunflowers (1888)"
    assert api.get(f"{C}/works").json()["records"] == 1
    assert api.delete(f"{C}/works/records/w1").status_code == 204
    gone = api.get(f"{C}/works/records/w1")
    assert gone.status_code == 404 and gone.json()["code"] == "record-not-found"
    assert api.get(f"{C}/other/records/w1").status_code == 200


def test_record_source_is_checked_like_pipeline_events(api: Any) -> None:
    make_collection(api)
    for source in ("ftp://x/y.png", "../../etc/passwd", "artifact://../x"):
        resp = api.post(f"{C}/works/records", json={"id": "a", "source": source})
        assert resp.status_code == 400 and resp.json()["field"] == "source", source
    assert api.get(f"{C}/works").json()["records"] == 0


def test_put_refuses_an_id_that_is_not_the_paths(api: Any) -> None:
    make_collection(api)
    resp = api.put(f"{C}/works/records/a", json={"id": "b"})
    assert resp.status_code == 400 and resp.json()["field"] == "id"


def test_record_pages_follow_cursors_without_gaps_while_records_are_added(api: Any) -> None:
    make_collection(api)
    for i in range(25):
        api.post(f"{C}/works/records", json={"id": f"r{i:02d}"})
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 10} | ({"cursor": cursor} if cursor else {})
        page = api.get(f"{C}/works/records", params=params).json()
        seen += [r["id"] for r in page["items"]]
        if len(seen) == 10:
            api.post(f"{C}/works/records", json={"id": "late"})
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"r{i:02d}" for i in range(25)] + ["late"]


def test_malformed_cursor_is_400_naming_the_cursor(api: Any) -> None:
    make_collection(api)
    resp = api.get(f"{C}/works/records", params={"cursor": "!!!not-a-cursor"})
    assert resp.status_code == 400 and resp.json()["field"] == "cursor"
    assert resp.json()["code"] == "invalid-query"
