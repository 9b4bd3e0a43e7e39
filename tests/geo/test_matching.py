"""Matching posted scenes to AOIs, on SQLite (in-process STRtree) and PostgreSQL (PostGIS): the rules,
idempotency, explain, the antimeridian, and the index kept in step across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from modelyard.app import create_app
from modelyard.durable import log
from modelyard.geo import spatial
from modelyard.geo.models import GeoRun
from tests.conftest import ADMIN_KEY
from tests.geo.conftest import make_aoi, s2_item, square

# an AOI written by another process, through the service: create (data) or update (id and data)
WRITE_AOI = """
import json, sys
from pathlib import Path
from modelyard.app import build_context
from modelyard.geo import aois
from modelyard.geo.schemas import AoiCreate, AoiUpdate
from modelyard.settings import Settings
data_dir, url, aoi_id, data = sys.argv[1], sys.argv[2] or None, int(sys.argv[3]), json.loads(sys.argv[4])
ctx = build_context(Settings(data_dir=Path(data_dir), database_url=url, log_to_file=False, worker=False,
                             _env_file=None))
done = aois.update_aoi(ctx, aoi_id, AoiUpdate(**data)) if aoi_id else aois.create_aoi(ctx, AoiCreate(**data))
ctx.engine.dispose()
print(done.id)
"""


def _runs(api: TestClient) -> int:
    with api.ctx.uow() as session:  # type: ignore[attr-defined]
        return int(session.scalar(select(func.count()).select_from(GeoRun)) or 0)


def test_rules_idempotency_and_explain(both: TestClient) -> None:
    api = both
    fine = make_aoi(api, name="fine", wavelengths=[0.665, 0.842], target_resolution=10)
    coarse_ok = make_aoi(api, name="swir", model="water", wavelengths=[1.61], target_resolution=30)
    too_fine = make_aoi(api, name="too-fine", wavelengths=[1.61], target_resolution=10)
    no_band = make_aoi(api, name="thermal", wavelengths=[11.0], target_resolution=100)
    any_band = make_aoi(api, name="any", wavelengths=[], target_resolution=10)
    make_aoi(api, name="inactive", active=False)
    make_aoi(api, name="far", geometry=square(50, 50))
    # the bboxes overlap the scene's, the shapes do not: an L around the scene's corner
    ell = [[4.0, 44.0], [7.0, 44.0], [7.0, 44.9], [4.9, 44.9], [4.9, 47.0], [4.0, 47.0], [4.0, 44.0]]
    near = make_aoi(api, name="near", geometry={"type": "Polygon", "coordinates": [ell]})

    resp = api.post("/api/v1/scenes", params={"explain": "true"}, json=s2_item())
    assert resp.status_code == 201, resp.text
    [scene] = resp.json()["scenes"]
    matched = {(m["aoi_id"], m["model"], m["new"]) for m in scene["matches"]}
    assert matched == {
        (fine["id"], "fields", True),
        (coarse_ok["id"], "water", True),
        (any_band["id"], "fields", True),
    }
    explained = {e["aoi_id"]: e for e in scene["explain"]}
    assert set(explained) == {
        fine["id"],
        coarse_ok["id"],
        too_fine["id"],
        no_band["id"],
        any_band["id"],
        near["id"],
    }
    assert "1.61 µm is covered only at GSD 20 m, not <= 10 m" in explained[too_fine["id"]]["reasons"]
    assert "11 µm is in no band" in explained[no_band["id"]]["reasons"]
    assert explained[near["id"]]["matched"] is False
    assert explained[near["id"]]["reasons"][0].startswith("footprint does not intersect")
    assert "0.665 µm in band B04 at 10 m" in explained[fine["id"]]["reasons"]
    assert _runs(api) == 3

    again = api.post("/api/v1/scenes", json=s2_item())
    assert again.status_code == 200
    body = again.json()
    assert (body["new_scenes"], body["runs_queued"]) == (0, 0)
    assert body["scenes"][0]["scene_id"] == scene["scene_id"]
    assert {m["run_id"] for m in body["scenes"][0]["matches"]} == {m["run_id"] for m in scene["matches"]}
    assert "explain" not in body["scenes"][0]
    assert _runs(api) == 3
    with api.ctx.uow() as session:  # type: ignore[attr-defined]
        queued = log.read(session, prefixes=["geo.run.queued"])
    assert sorted(e.data["aoi_id"] for e in queued) == sorted([fine["id"], coarse_ok["id"], any_band["id"]])

    if "postgresql" in str(api.ctx.settings.database_url) and os.environ.get("CI") == "true":  # type: ignore[attr-defined]
        assert spatial.index(api.ctx.db).name == "postgis"  # type: ignore[attr-defined]


def test_antimeridian_aoi_matches_scenes_on_either_side(both: TestClient) -> None:
    api = both
    ring = [[178, -18], [-178, -18], [-178, -16], [178, -16], [178, -18]]
    fiji = make_aoi(api, name="fiji", geometry={"type": "Polygon", "coordinates": [ring]})
    west = api.post("/api/v1/scenes", json=s2_item("west", square(-179.5, -17.5, 0.5))).json()
    east = api.post("/api/v1/scenes", json=s2_item("east", square(178.5, -17.5, 0.5))).json()
    # bbox-wise this scene sits inside the split AOI's [-180, 180] box, but far from both parts
    middle = api.post("/api/v1/scenes", json=s2_item("middle", square(0, -17.5, 0.5))).json()
    assert [m["aoi_id"] for m in west["scenes"][0]["matches"]] == [fiji["id"]]
    assert [m["aoi_id"] for m in east["scenes"][0]["matches"]] == [fiji["id"]]
    assert middle["scenes"][0]["matches"] == []


def test_index_follows_aoi_writes_made_by_another_process(both: TestClient) -> None:
    api = both
    assert api.post("/api/v1/scenes", json=s2_item("first")).json()["scenes"][0]["matches"] == []
    other = create_app(api.ctx.settings)  # type: ignore[attr-defined]
    with TestClient(other, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as second:
        made = make_aoi(second)
        matches = api.post("/api/v1/scenes", json=s2_item("second")).json()["scenes"][0]["matches"]
        assert [m["aoi_id"] for m in matches] == [made["id"]]
        second.patch(f"/api/v1/aois/{made['id']}", json={"active": False})
        assert api.post("/api/v1/scenes", json=s2_item("third")).json()["scenes"][0]["matches"] == []
        second.patch(f"/api/v1/aois/{made['id']}", json={"active": True, "geometry": square(100, 0)})
        assert api.post("/api/v1/scenes", json=s2_item("fourth")).json()["scenes"][0]["matches"] == []
    runs = _runs(api)
    assert runs == 1
    busy = api.delete(f"/api/v1/aois/{made['id']}")
    assert busy.status_code == 409 and "active to false" in busy.json()["detail"]


def _write_aoi_elsewhere(api: TestClient, data: dict[str, object], aoi_id: int = 0) -> int:
    settings = api.ctx.settings  # type: ignore[attr-defined]
    argv = [str(settings.data_dir), settings.database_url or "", str(aoi_id), json.dumps(data)]
    done = subprocess.run(
        [sys.executable, "-c", WRITE_AOI, *argv], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def test_index_follows_aoi_writes_committed_by_another_process(both: TestClient) -> None:
    """The index is current at every post (on SQLite it skips reading the AOI revision when no other
    connection committed and this process wrote no AOI): an AOI added, moved, deactivated and
    reactivated by another process, or by this one, changes what the very next post matches."""
    api = both
    assert api.post("/api/v1/scenes", json=s2_item("s1")).json()["scenes"][0]["matches"] == []
    assert api.post("/api/v1/scenes", json=s2_item("s2")).json()["scenes"][0]["matches"] == []

    def matched(stac_id: str) -> list[int]:
        scene = api.post("/api/v1/scenes", json=s2_item(stac_id)).json()["scenes"][0]
        return [m["aoi_id"] for m in scene["matches"]]

    body = {
        "name": "elsewhere",
        "geometry": square(5.2, 45.2, 0.5),
        "target_resolution": 10,
        "model": "fields",
    }
    made = _write_aoi_elsewhere(api, body)
    assert matched("s3") == [made]
    assert matched("s4") == [made]
    _write_aoi_elsewhere(api, {"geometry": square(100, 0)}, made)
    assert matched("s5") == []
    _write_aoi_elsewhere(api, {"geometry": square(5.2, 45.2, 0.5)}, made)
    assert matched("s6") == [made]
    _write_aoi_elsewhere(api, {"active": False}, made)
    assert matched("s7") == []
    # written here: the post may well use the very connection that committed the change
    assert api.patch(f"/api/v1/aois/{made}", json={"active": True}).status_code == 200
    assert matched("s8") == [made]
    assert api.patch(f"/api/v1/aois/{made}", json={"target_resolution": 5}).status_code == 200
    assert matched("s9") == []
