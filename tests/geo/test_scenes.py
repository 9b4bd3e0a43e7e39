"""Imagery in over the API: what is accepted, and each bad input refused with its exact 4xx and nothing
stored."""

from __future__ import annotations

import threading
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from modelyard.context import AppContext
from modelyard.geo import scenes
from modelyard.geo.models import GeoRun, Scene
from modelyard.geo.schemas import ScenesPosted
from tests.geo.conftest import StacServer, make_aoi, s2_item, square, stac11_item, variant

BOX = {"min_lon": 5.0, "min_lat": 45.0, "max_lon": 6.0, "max_lat": 46.0}


def _nothing_stored(api: TestClient) -> None:
    assert api.get("/api/v1/scenes").json()["total"] == 0


def test_an_eo_item_is_stored_with_normalised_bands(api: TestClient) -> None:
    resp = api.post("/api/v1/scenes", json=s2_item())
    assert resp.status_code == 201, resp.text
    posted = resp.json()
    assert (posted["received"], posted["new_scenes"]) == (1, 1)
    scene = api.get(f"/api/v1/scenes/{posted['scenes'][0]['scene_id']}").json()
    assert scene["collection"] == "sentinel-2-l2a" and scene["gsd"] == 10
    assert scene["datetime"].startswith("2026-06-01T10:36:29")
    red = next(b for b in scene["bands"] if b["name"] == "B04")
    assert red == {
        "name": "B04",
        "common_name": "red",
        "center_wavelength": 0.665,
        "full_width_half_max": 0.038,
        "gsd": 10,
    }
    assert next(b for b in scene["bands"] if b["name"] == "B11")["gsd"] == 20
    assert scene["item"]["id"] == "S2B_31TFJ_20260601_0_L2A"


def test_stac_1_1_bands_and_common_name_fallback(api: TestClient) -> None:
    resp = api.post("/api/v1/scenes", json=stac11_item())
    assert resp.status_code == 201, resp.text
    scene = api.get(f"/api/v1/scenes/{resp.json()['scenes'][0]['scene_id']}").json()
    assert scene["collection"] is None
    assert {b["name"]: b["gsd"] for b in scene["bands"]}["B12"] == 20
    only_names = s2_item("names-only", bands=[])
    only_names["assets"]["visual"] = {
        "href": "https://x/tci.tif",
        "eo:bands": [{"name": "R", "common_name": "red"}],
    }
    only_names["properties"]["gsd"] = 3
    scene_id = api.post("/api/v1/scenes", json=only_names).json()["scenes"][0]["scene_id"]
    bands = api.get(f"/api/v1/scenes/{scene_id}").json()["bands"]
    assert bands == [
        {"name": "R", "common_name": "red", "center_wavelength": 0.655, "full_width_half_max": 0.07, "gsd": 3}
    ]


def test_invalid_stac_is_a_422_naming_path_and_rule(api: TestClient) -> None:
    item = s2_item()
    item["assets"]["B04"]["eo:bands"][0]["center_wavelength"] = "red-ish"
    item["properties"]["datetime"] = "last tuesday"
    resp = api.post("/api/v1/scenes", json=item)
    assert resp.status_code == 422
    problems = {(e["path"], e["rule"]) for e in resp.json()["errors"]}
    assert ('$.assets.B04["eo:bands"][0].center_wavelength', "type") in problems
    assert ("$.properties.datetime", "pattern") in problems
    _nothing_stored(api)


def test_unsupported_stac_version_and_not_an_item(api: TestClient) -> None:
    resp = api.post("/api/v1/scenes", json=variant(s2_item(), stac_version="0.9.0"))
    assert resp.status_code == 422 and resp.json()["errors"][0]["path"] == "$.stac_version"
    resp = api.post("/api/v1/scenes", json={"type": "Catalog"})
    assert resp.status_code == 422 and resp.json()["field"] == "type"
    _nothing_stored(api)


def test_eo_bands_in_properties_without_asset_bands_break_the_eo_rule(api: TestClient) -> None:
    item = s2_item(bands=[])
    item["properties"]["eo:bands"] = [{"name": "R", "common_name": "red"}]
    resp = api.post("/api/v1/scenes", json=item)
    assert resp.status_code == 422
    [problem] = resp.json()["errors"]
    assert problem["path"].startswith("$.properties") and problem["rule"] == "not-allowed"
    assert "'common_name': 'red'" in problem["detail"] and "eo/v1.1.0" in problem["detail"]


def test_missing_eo_bands_is_a_422(api: TestClient) -> None:
    resp = api.post("/api/v1/scenes", json=s2_item(bands=[]))
    assert resp.status_code == 422
    assert resp.json()["errors"] == [
        {
            "path": "$.properties",
            "rule": "eo:bands",
            "detail": "no spectral band with a wavelength: give eo:bands (eo v1.x) or bands with "
            "eo:center_wavelength or eo:common_name (STAC 1.1, eo v2), in properties or assets",
        }
    ]
    _nothing_stored(api)


def test_an_item_collection_with_one_bad_item_stores_nothing_and_lists_it(api: TestClient) -> None:
    bad = s2_item("bad")
    del bad["properties"]["datetime"]
    self_crossing = s2_item(
        "bowtie", {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    )
    collection = {"type": "FeatureCollection", "features": [s2_item("good"), bad, self_crossing]}
    resp = api.post("/api/v1/scenes", json=collection)
    assert resp.status_code == 422
    body = resp.json()
    assert body["detail"].startswith("2 of 3 item(s) invalid")
    paths = [(e["path"], e["rule"]) for e in body["errors"]]
    assert ("$.features[1].properties", "required") in paths or any(
        p.startswith("$.features[1]") for p, _ in paths
    )
    assert ("$.features[2].geometry.coordinates", "self-intersection") in paths
    _nothing_stored(api)


def test_a_huge_item_collection_is_a_413_naming_the_cap(api: TestClient) -> None:
    api.ctx.settings.geo_item_collection_max = 3  # type: ignore[attr-defined]
    collection = {"type": "FeatureCollection", "features": [s2_item(f"i{i}") for i in range(4)]}
    resp = api.post("/api/v1/scenes", json=collection)
    assert resp.status_code == 413
    body = resp.json()
    assert body["setting"] == "MODELYARD_GEO_ITEM_COLLECTION_MAX" and body["cap"] == 3
    assert "4 items, over the cap of 3" in body["detail"]
    _nothing_stored(api)


def test_a_url_to_a_private_address_is_refused(api: TestClient) -> None:
    resp = api.post("/api/v1/scenes", json={"url": "http://127.0.0.1:9/item.json"})
    assert resp.status_code == 400
    assert resp.json()["code"] == "url-refused" and resp.json()["field"] == "url"
    resp = api.post("/api/v1/scenes", json={"url": "file:///etc/passwd"})
    assert resp.status_code == 400 and resp.json()["code"] == "url-refused"
    _nothing_stored(api)


def test_a_url_is_fetched_when_private_addresses_are_allowed(
    api: TestClient, stac_server: StacServer
) -> None:
    api.ctx.settings.allow_private_urls = True  # type: ignore[attr-defined]
    url = stac_server.add("/item.json", s2_item("fetched"))
    resp = api.post("/api/v1/scenes", json={"url": url})
    assert resp.status_code == 201, resp.text
    assert resp.json()["scenes"][0]["stac_id"] == "fetched"


def test_unshipped_extensions_are_reported_not_fetched(api: TestClient) -> None:
    item = s2_item()
    item["stac_extensions"].append("https://stac-extensions.github.io/view/v1.0.0/schema.json")
    resp = api.post("/api/v1/scenes", json=item)
    assert resp.status_code == 201
    assert resp.json()["scenes"][0]["unvalidated_extensions"] == [
        "https://stac-extensions.github.io/view/v1.0.0/schema.json"
    ]


def test_scenes_list_by_collection_and_bbox(api: TestClient) -> None:
    make_aoi(api)
    api.post("/api/v1/scenes", json=s2_item("a"))
    api.post("/api/v1/scenes", json=stac11_item("b"))
    listed = api.get("/api/v1/scenes", params={"collection": "sentinel-2-l2a"}).json()
    assert [s["stac_id"] for s in listed["items"]] == ["a"] and "item" not in listed["items"][0]
    assert api.get("/api/v1/scenes", params={"bbox": "100,0,101,1"}).json()["total"] == 0
    assert api.get("/api/v1/scenes/999").status_code == 404


def test_an_item_without_collection_stored_by_two_posts_at_once_is_stored_once(both: TestClient) -> None:
    ctx: AppContext = both.ctx  # type: ignore[attr-defined]
    make_aoi(both)
    item = s2_item("LC09_L2SP_196029_20260601", collection=None)
    # the other post has stored the scene and not yet committed when this one looks for it
    other = ctx.db.sessions()
    row = Scene(stac_id=item["id"], item=item, geometry=square(5.0, 45.0), bands=[], **BOX)
    other.add(row)
    other.flush()
    inserting = threading.Event()

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO SCENES"):
            inserting.set()

    event.listen(ctx.db.engine, "before_cursor_execute", seen)
    result: list[ScenesPosted | BaseException] = []

    def post() -> None:
        try:
            result.append(scenes.post_scenes(ctx, item))
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=post)
    try:
        thread.start()
        assert inserting.wait(30), result  # this post is storing it too (it waits for the other's commit)
        other.commit()
        thread.join(60)
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", seen)
        other.close()
    [posted] = result
    assert isinstance(posted, ScenesPosted), posted
    assert (posted.new_scenes, posted.scenes[0].scene_id, posted.runs_queued) == (0, row.id, 1)
    with ctx.uow() as session:
        assert session.scalar(select(func.count()).where(Scene.stac_id == item["id"])) == 1
        assert session.scalar(select(func.count()).select_from(GeoRun)) == 1
    again = both.post("/api/v1/scenes", json=item)
    assert again.status_code == 200 and again.json()["runs_queued"] == 0
