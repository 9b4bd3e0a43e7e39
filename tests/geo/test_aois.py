"""Areas of interest over the API: CRUD, filters, scopes, and geometry repaired or refused."""

from __future__ import annotations

import itertools

from fastapi.testclient import TestClient

from tests.geo.conftest import make_aoi, square


def test_aoi_crud_and_revision(api: TestClient) -> None:
    made = make_aoi(api, wavelengths=[0.665, 0.56, 0.665], tags=["wine", "wine", "fr"])
    assert made["wavelengths"] == [0.56, 0.665] and made["tags"] == ["wine", "fr"]
    assert made["bbox"] == [5.2, 45.2, 5.7, 45.7] and made["revision"] == 1 and made["active"] is True
    assert api.get(f"/api/v1/aois/{made['id']}").json() == made
    changed = api.patch(f"/api/v1/aois/{made['id']}", json={"target_resolution": 20, "active": False}).json()
    assert (changed["target_resolution"], changed["active"], changed["revision"]) == (20, False, 2)
    same = api.patch(f"/api/v1/aois/{made['id']}", json={"target_resolution": 20}).json()
    assert same["revision"] == 2  # nothing changed, nothing bumped
    assert api.delete(f"/api/v1/aois/{made['id']}").status_code == 204
    gone = api.get(f"/api/v1/aois/{made['id']}")
    assert gone.status_code == 404 and gone.json()["code"] == "aoi-not-found"


def test_list_filters_by_bbox_model_tag_and_active(api: TestClient) -> None:
    a = make_aoi(api, name="a", geometry=square(0, 0), tags=["wine"])
    b = make_aoi(api, name="b", geometry=square(10, 10), model="water", tags=["wine-cellar"])
    c = make_aoi(api, name="c", geometry=square(20, 20), active=False, tags=["lake"])

    def ids(**params: object) -> list[int]:
        resp = api.get("/api/v1/aois", params=params)
        assert resp.status_code == 200, resp.text
        return [i["id"] for i in resp.json()["items"]]

    assert ids() == [a["id"], b["id"], c["id"]]
    assert ids(bbox="0.5,0.5,10.2,10.2") == [a["id"], b["id"]]
    assert ids(model="water") == [b["id"]]
    assert ids(tag="wine") == [a["id"]]  # a tag, not a substring of one
    assert ids(active="false") == [c["id"]]
    page = api.get("/api/v1/aois", params={"limit": 1, "offset": 1}).json()
    assert page["total"] == 3 and [i["id"] for i in page["items"]] == [b["id"]]
    bad = api.get("/api/v1/aois", params={"bbox": "1,2,3"})
    assert bad.status_code == 400 and bad.json()["field"] == "bbox"


def test_writes_need_the_write_scope(api: TestClient) -> None:
    reader = api.post("/api/v1/keys", json={"name": "reader", "scopes": ["read"]}).json()["key"]
    headers = {"Authorization": f"Bearer {reader}"}
    body = {"name": "x", "geometry": square(0, 0), "target_resolution": 10, "model": "fields"}
    assert api.post("/api/v1/aois", json=body, headers=headers).status_code == 403
    assert api.get("/api/v1/aois", headers=headers).status_code == 200
    assert api.get("/api/v1/aois").json()["total"] == 0


def test_unambiguous_geometry_faults_are_repaired(api: TestClient) -> None:
    # clockwise, not closed, with a repeated point
    ring = [[0, 0], [0, 1], [0, 1], [1, 1], [1, 0]]
    made = make_aoi(api, geometry={"type": "Polygon", "coordinates": [ring]})
    out = made["geometry"]["coordinates"][0]
    assert out[0] == out[-1] and len(out) == 5
    signed = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in itertools.pairwise(out))
    assert signed > 0  # counter-clockwise exterior (RFC 7946)


def test_self_intersection_is_refused_naming_where(api: TestClient) -> None:
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    resp = api.post(
        "/api/v1/aois", json={"name": "x", "geometry": bowtie, "target_resolution": 10, "model": "fields"}
    )
    assert resp.status_code == 422
    body = resp.json()
    assert body["code"] == "validation-failed" and body["field"] == "geometry"
    assert body["errors"] == [
        {
            "path": "$.geometry.coordinates",
            "rule": "self-intersection",
            "detail": "self-intersection at 0.5,0.5",
        }
    ]
    assert api.get("/api/v1/aois").json()["total"] == 0


def test_out_of_range_coordinates_and_unknown_models_are_refused(api: TestClient) -> None:
    far = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 91], [0, 0]]]}
    base = {"name": "x", "target_resolution": 10, "model": "fields"}
    resp = api.post("/api/v1/aois", json={**base, "geometry": far})
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["path"] == "$.geometry.coordinates[0][2]"
    assert resp.json()["errors"][0]["rule"] == "latitude"
    resp = api.post("/api/v1/aois", json={**base, "geometry": square(0, 0), "model": "nope"})
    assert resp.status_code == 422 and resp.json()["field"] == "model"
    resp = api.post("/api/v1/aois", json={**base, "geometry": {"type": "Point", "coordinates": [0, 0]}})
    assert resp.status_code == 422 and resp.json()["errors"][0]["path"] == "$.geometry.type"
    assert api.get("/api/v1/aois").json()["total"] == 0


def test_antimeridian_crossing_shape_is_split(api: TestClient) -> None:
    # Fiji-ish: 178°E to 178°W written as one ring that jumps across 180
    ring = [[178, -18], [-178, -18], [-178, -16], [178, -16], [178, -18]]
    made = make_aoi(api, geometry={"type": "Polygon", "coordinates": [ring]})
    assert made["geometry"]["type"] == "MultiPolygon"
    assert made["bbox"] == [-180, -18, 180, -16]
    lons = sorted({p[0] for poly in made["geometry"]["coordinates"] for p in poly[0]})
    assert lons == [-180, -178, 178, 180]
