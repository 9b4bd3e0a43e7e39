"""The AOI and scene pages: lists beside an SVG map of outlines and footprints."""

from __future__ import annotations

from fastapi.testclient import TestClient

from modelyard.web.geo import outline_map
from tests.geo.conftest import s2_item, square
from tests.web.conftest import api_headers, sign_in


def test_outline_map_draws_every_ring_inside_the_box() -> None:
    split = {
        "type": "MultiPolygon",
        "coordinates": [[square(170, 0)["coordinates"][0]], [square(-180, 0)["coordinates"][0]]],
    }
    svg = outline_map([(square(0, 0), "aoi", "a <b>"), (split, "scene", "s")])
    assert svg.count("<polygon") == 3 and "a &lt;b&gt;" in svg
    coordinates = [
        float(v)
        for part in svg.split('points="')[1:]
        for xy in part.split('"')[0].split()
        for v in xy.split(",")
    ]
    assert min(coordinates) >= 0 and max(coordinates) <= 640
    assert "<polygon" not in outline_map([])
    point = {"type": "Point", "coordinates": [1, 1]}
    mixed = {"type": "GeometryCollection", "geometries": [point, square(0, 0)]}
    drawn = outline_map([(point, "label", "p"), (mixed, "label", "m")])
    assert drawn.count("<polygon") == 1 and "<title>m</title>" in drawn  # points and lines are not drawn


def test_aoi_and_scene_pages_list_and_map(app_client: TestClient) -> None:
    headers = api_headers()
    app_client.post("/api/v1/models", json={"name": "fields"}, headers=headers)
    body = {
        "name": "vineyards",
        "geometry": square(5.2, 45.2, 0.5),
        "target_resolution": 10,
        "model": "fields",
    }
    assert app_client.post("/api/v1/aois", json=body, headers=headers).status_code == 201
    assert app_client.post("/api/v1/scenes", json=s2_item(), headers=headers).status_code == 201
    sign_in(app_client)
    aois = app_client.get("/ui/aois")
    assert aois.status_code == 200 and "vineyards" in aois.text
    assert '<polygon class="aoi"' in aois.text and '<polygon class="scene"' in aois.text
    scenes = app_client.get("/ui/scenes")
    assert scenes.status_code == 200 and "S2B_31TFJ_20260601_0_L2A" in scenes.text
