"""The results callback: a single-use token, a checked STAC label item and GeoJSON, a prediction and
its summary; and every way a report is refused with nothing stored."""

from __future__ import annotations

import functools
import json
import threading
from datetime import timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from modelyard import db
from modelyard.context import AppContext
from modelyard.durable import log
from modelyard.geo import execution
from modelyard.geo.run_models import GeoPrediction, RunToken
from tests.geo import label_command
from tests.geo.conftest import s2_item
from tests.geo.runs_helpers import command_model, queue_run, take

ITEM = s2_item()


@pytest.fixture
def ctx(api: TestClient) -> AppContext:
    command_model(api)
    found: AppContext = api.ctx  # type: ignore[attr-defined]
    return found


def post(api: TestClient, run_id: int, token: str, item: Any, geojson: Any) -> Any:
    return api.post(
        f"/api/v1/runs/{run_id}/results",
        headers={"Authorization": f"Bearer {token}"},
        data={"item": json.dumps(item)},
        files={"file": ("labels.geojson", json.dumps(geojson).encode(), "application/geo+json")},
    )


def stored(ctx: AppContext) -> tuple[int, list[str]]:
    with ctx.uow() as session:
        count = session.scalar(select(func.count()).select_from(GeoPrediction)) or 0
    return count, [o.key for o in ctx.storage.list("geo/predictions")]


def test_a_report_records_the_prediction_once_and_lists_it_as_stac(api: TestClient, ctx: AppContext) -> None:
    run_id = queue_run(api)
    started = take(ctx, run_id)
    resp = post(api, run_id, started.token, label_command.label_item(ITEM), label_command.ships(ITEM))
    assert resp.status_code == 201, resp.text
    summary = resp.json()["summary"]
    assert summary["features"] == 4
    assert summary["classes"]["ship"]["count"] == 3 and summary["classes"]["wake"]["count"] == 1
    # a 0.001° square at 45.21°N: 111.3 km x 78.5 km per degree -> ~8,700 m²
    assert 8000 < summary["classes"]["ship"]["area_m2"] / 3 < 9500
    again = post(api, run_id, started.token, label_command.label_item(ITEM), label_command.ships(ITEM))
    assert again.status_code == 409 and again.json()["code"] == "token-used"
    assert stored(ctx)[0] == 1 and len(stored(ctx)[1]) == 1

    collection = api.get("/api/v1/predictions", params={"model": "ships"})
    assert collection.headers["content-type"] == "application/geo+json"
    (feature,) = collection.json()["features"]
    rels = {link["rel"]: link["href"] for link in feature["links"]}
    assert rels["source"].endswith(f"/api/v1/scenes/{resp.json()['scene_id']}")
    assert feature["properties"]["label:type"] == "vector"
    assert feature["properties"]["modelyard:run_id"] == run_id
    href = feature["assets"]["labels"]["href"]
    assert api.get(href).json() == label_command.ships(ITEM)
    assert api.get("/api/v1/predictions", params={"model": "water"}).json()["features"] == []
    assert api.get("/api/v1/predictions", params={"bbox": "100,0,101,1"}).json()["features"] == []
    assert len(api.get("/api/v1/predictions", params={"bbox": "5,45,5.5,45.5"}).json()["features"]) == 1
    window = {"start": "2026-06-02T00:00:00Z"}
    assert api.get("/api/v1/predictions", params=window).json()["features"] == []

    with ctx.uow() as session:
        events = log.read(session, prefixes=["geo."])
    assert [e.topic for e in events] == ["geo.run.queued", "geo.run.started", "geo.results.available"]
    assert all(e.data["model"] == "ships" and e.subject == "ships" for e in events)
    assert events[-1].data["summary"]["classes"]["ship"]["count"] == 3


def test_a_wrong_token_is_401_and_an_expired_one_410_and_nothing_is_stored(
    api: TestClient, ctx: AppContext
) -> None:
    run_id = queue_run(api)
    started = take(ctx, run_id)
    label, ships = label_command.label_item(ITEM), label_command.ships(ITEM)
    assert post(api, run_id, "not-the-token", label, ships).status_code == 401
    no_header = api.post(f"/api/v1/runs/{run_id}/results", json=label)  # the admin key is not a run token
    assert no_header.status_code == 401
    assert post(api, run_id + 99, started.token, label, ships).status_code == 404
    with ctx.uow() as session:
        session.execute(update(RunToken).values(expires_at=db.utcnow() - timedelta(seconds=1)))
    resp = post(api, run_id, started.token, label, ships)
    assert resp.status_code == 410 and resp.json()["code"] == "token-expired"
    assert stored(ctx) == (0, [])


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda item, gj: item["properties"].pop("label:tasks"), "label:tasks"),
        (lambda item, gj: item["assets"].clear(), "$.assets"),
        (
            lambda item, gj: gj["features"][1].update(
                geometry={"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
            ),
            "asset.features[1].geometry",
        ),
        (lambda item, gj: gj.update(type="Topology"), "asset"),
    ],
)
def test_a_bad_label_item_or_geojson_is_422_naming_where_and_the_token_stays_usable(
    api: TestClient, ctx: AppContext, change: Any, path: str
) -> None:
    run_id = queue_run(api)
    started = take(ctx, run_id)
    label, ships = label_command.label_item(ITEM), label_command.ships(ITEM)
    change(label, ships)
    resp = post(api, run_id, started.token, label, ships)
    assert resp.status_code == 422, resp.text
    assert path in resp.text
    assert stored(ctx) == (0, [])
    good = post(api, run_id, started.token, label_command.label_item(ITEM), label_command.ships(ITEM))
    assert good.status_code == 201


def test_a_geojson_that_is_not_json_is_422(api: TestClient, ctx: AppContext) -> None:
    run_id = queue_run(api)
    started = take(ctx, run_id)
    resp = api.post(
        f"/api/v1/runs/{run_id}/results",
        headers={"Authorization": f"Bearer {started.token}"},
        data={"item": json.dumps(label_command.label_item(ITEM))},
        files={"file": ("labels.geojson", b"{not json", "application/geo+json")},
    )
    assert resp.status_code == 422 and "not JSON" in resp.text
    no_item = api.post(
        f"/api/v1/runs/{run_id}/results",
        headers={"Authorization": f"Bearer {started.token}"},
        files={"file": ("labels.geojson", json.dumps(label_command.ships(ITEM)).encode())},
    )
    assert no_item.status_code == 400 and no_item.json()["field"] == "item"
    assert stored(ctx) == (0, [])


def test_summaries_count_runs_scenes_classes_and_area(api: TestClient, ctx: AppContext) -> None:
    run_id = queue_run(api)
    started = take(ctx, run_id)
    reported = post(api, run_id, started.token, label_command.label_item(ITEM), label_command.ships(ITEM))
    assert reported.status_code == 201
    queue_run(api, stac_id="S2B_31TFJ_20260606_0_L2A")
    summary = api.get("/api/v1/models/ships/summary").json()
    assert summary["runs"] == {"running": 1, "queued": 1}
    assert summary["scenes_matched"] == 2 and summary["scenes_seen"] == 2
    assert summary["classes"] == {"ship": 3, "wake": 1} and summary["predictions"] == 1
    # the AOI (0.5° square at 45.2°N: 55.7 km x 39.0 km) is wholly covered by the scenes
    assert 2.1e9 < summary["area_covered_m2"] < 2.25e9
    assert summary["labelled_area_m2"] == pytest.approx(reported.json()["summary"]["area_m2"])
    today = [d for d in summary["days"] if d["predictions"]]
    assert len(today) == 1 and today[0]["classes"] == {"ship": 3, "wake": 1}
    aoi_id = api.get("/api/v1/runs/" + str(run_id)).json()["aoi_id"]
    per_aoi = api.get(f"/api/v1/aois/{aoi_id}/summary").json()
    assert per_aoi["classes"] == {"ship": 3, "wake": 1} and per_aoi["aoi_id"] == aoi_id
    assert api.get("/api/v1/models/nope/summary").status_code == 404
    bad = api.get("/api/v1/models/ships/summary", params={"start": "2026-02-01", "end": "2026-01-01"})
    assert bad.status_code == 400 and bad.json()["field"] == "start"


def test_a_label_asset_given_by_url_is_fetched_within_the_private_address_rule(
    api: TestClient, ctx: AppContext, tmp_path: Path
) -> None:
    (tmp_path / "labels.geojson").write_text(json.dumps(label_command.ships(ITEM)))
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            run_id = queue_run(api)
            started = take(ctx, run_id)
            label = label_command.label_item(ITEM)
            base = f"http://127.0.0.1:{server.server_address[1]}"
            headers = {"Authorization": f"Bearer {started.token}"}
            label["assets"]["labels"]["href"] = f"{base}/labels.geojson"
            refused = api.post(f"/api/v1/runs/{run_id}/results", headers=headers, json=label)
            assert refused.status_code == 400 and refused.json()["code"] == "url-refused"
            ctx.settings.allow_private_urls = True
            label["assets"]["labels"]["href"] = f"{base}/missing.geojson"
            missing = api.post(f"/api/v1/runs/{run_id}/results", headers=headers, json=label)
            assert missing.status_code == 502
            assert stored(ctx) == (0, [])
            label["assets"]["labels"]["href"] = f"{base}/labels.geojson"
            resp = api.post(f"/api/v1/runs/{run_id}/results", headers=headers, json=label)
            assert resp.status_code == 201, resp.text
            assert json.loads(ctx.storage.get_bytes(resp.json()["uri"])) == label_command.ships(ITEM)
        finally:
            server.shutdown()


def test_a_run_left_running_by_a_vanished_workflow_is_queued_again_then_failed(
    api: TestClient, ctx: AppContext
) -> None:
    run_id = queue_run(api)
    take(ctx, run_id)  # claimed under an id no workflow ever had
    ctx.settings.geo_run_claim_timeout_seconds = -1.0  # every running run is old enough to be looked at
    assert execution.sweep_lost(ctx) == 1
    again = api.get(f"/api/v1/runs/{run_id}").json()
    assert again["state"] == "queued" and "queued again" in again["error"]
    take(ctx, run_id)  # the second (last) attempt, lost too
    assert execution.sweep_lost(ctx) == 1
    final = api.get(f"/api/v1/runs/{run_id}").json()
    assert final["state"] == "failed" and "2 times; gave up" in final["error"]


def test_a_token_is_spent_once_on_both_databases(both: TestClient) -> None:
    command_model(both)
    ctx: AppContext = both.ctx  # type: ignore[attr-defined]
    run_id = queue_run(both)
    started = take(ctx, run_id)
    label, ships = label_command.label_item(ITEM), label_command.ships(ITEM)
    assert post(both, run_id, started.token, label, ships).status_code == 201
    assert post(both, run_id, started.token, label, ships).status_code == 409
    assert stored(ctx)[0] == 1
    assert both.get("/api/v1/models/ships/summary").json()["classes"] == {"ship": 3, "wake": 1}
