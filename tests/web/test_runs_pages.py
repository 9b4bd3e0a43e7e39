"""The dashboard's geo run pages: a run that failed shows its error and logs, and can be retried."""

from __future__ import annotations

import sys

from fastapi.testclient import TestClient

from tests.geo.conftest import s2_item, square
from tests.geo.runs_helpers import COMMAND
from tests.web.conftest import api_headers, csrf_of, sign_in, wait_for


def test_a_failed_run_shows_its_error_and_logs_and_is_retried(app_client: TestClient) -> None:
    sign_in(app_client)
    spec = {"argv": [sys.executable, str(COMMAND)], "env": {"MODE": "fail"}, "timeout_seconds": 60}
    h = api_headers()
    assert app_client.post(
        "/api/v1/models", json={"name": "ships", "kind": "command", "command": spec}, headers=h
    )
    aoi = {"name": "port", "geometry": square(5.2, 45.2, 0.5), "target_resolution": 10, "model": "ships"}
    assert app_client.post("/api/v1/aois", json=aoi, headers=h).status_code == 201
    posted = app_client.post("/api/v1/scenes", json=s2_item(), headers=h).json()
    run_id = posted["scenes"][0]["matches"][0]["run_id"]
    wait_for(lambda: app_client.get(f"/api/v1/runs/{run_id}", headers=h).json()["state"] == "failed")

    listing = app_client.get("/ui/runs", params={"model": "ships", "state": "failed"})
    assert listing.status_code == 200 and f'href="/ui/runs/{run_id}"' in listing.text
    assert "model weights are corrupt" in listing.text and "scenes matched 1" in listing.text
    page = app_client.get(f"/ui/runs/{run_id}")
    assert page.status_code == 200 and "exited with status 4" in page.text
    assert "item S2B_31TFJ_20260601_0_L2A" in page.text  # its stdout
    assert app_client.post(f"/ui/runs/{run_id}/retry", data={"csrf": "0" * 40}).status_code == 403
    resp = app_client.post(f"/ui/runs/{run_id}/retry", data={"csrf": csrf_of(page.text)})
    assert resp.status_code == 303 and resp.headers["location"] == f"/ui/runs/{run_id}"

    def started_twice() -> bool:
        found = app_client.get("/api/v1/log", params={"topics": "geo.run.started"}, headers=h).json()
        return len(found["items"]) == 2

    wait_for(started_twice)  # queued again, and taken by the worker again
