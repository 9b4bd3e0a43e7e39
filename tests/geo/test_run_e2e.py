"""End to end, as a user would: a real server with its worker; an AOI fed by a command model (a small
script that reads the item, writes GeoJSON and reports a label item to its callback URL with its token);
a real-looking eo item posted; the run happens on the worker, the label item comes back, the prediction
is listed and the summary counts it; a failing command's run fails with its logs."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.app import create_app
from modelyard.durable import log
from modelyard.settings import Settings
from tests.conftest import ADMIN_KEY, LiveServer
from tests.geo.conftest import s2_item, square
from tests.geo.runs_helpers import COMMAND

DEADLINE_S = 90.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[LiveServer, httpx.Client]]:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'modelyard.db'}",
        admin_key=ADMIN_KEY,
        log_to_file=False,
        worker=True,
        geo_run_poll_seconds=0.1,
        _env_file=None,  # type: ignore[call-arg]
    )
    app = create_app(settings)
    live = LiveServer(app)
    settings.run_callback_base_url = live.url  # the port is known once the server has one
    with live, httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        client.app = app  # type: ignore[attr-defined]
        yield live, client


def until(client: httpx.Client, run_id: int, states: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}").json()
        if run["state"] in states:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not reach {states}: {run}")


def model(client: httpx.Client, name: str, mode: str) -> None:
    spec = {"argv": [sys.executable, str(COMMAND)], "env": {"MODE": mode}, "timeout_seconds": 60}
    resp = client.post("/api/v1/models", json={"name": name, "kind": "command", "command": spec})
    assert resp.status_code == 201, resp.text
    aoi = {"name": f"{name} port", "geometry": square(5.2, 45.2, 0.5), "target_resolution": 10, "model": name}
    assert client.post("/api/v1/aois", json=aoi).status_code == 201


def test_an_eo_item_posted_runs_the_command_model_and_its_labels_come_back(
    server: tuple[LiveServer, httpx.Client],
) -> None:
    _, client = server
    model(client, "ships", "ok")
    model(client, "broken", "fail")
    model(client, "by-cli", "cli")
    posted = client.post("/api/v1/scenes", json=s2_item())
    assert posted.status_code == 201, posted.text
    matches = {m["model"]: m["run_id"] for m in posted.json()["scenes"][0]["matches"]}
    assert set(matches) == {"ships", "broken", "by-cli"}

    run = until(client, matches["ships"], {"succeeded", "failed"})
    logs = client.get(f"/api/v1/runs/{run['id']}/logs").json()
    assert run["state"] == "succeeded", (run, logs)
    assert "first report: 201" in logs["stdout"] and "second report: 409" in logs["stdout"]
    assert run["prediction_id"] is not None

    (item,) = client.get("/api/v1/predictions", params={"model": "ships"}).json()["features"]
    assert item["properties"]["label:classes"] == [{"name": "class", "classes": ["ship", "wake"]}]
    geojson = client.get(item["assets"]["labels"]["href"]).json()
    assert [f["properties"]["class"] for f in geojson["features"]] == ["ship", "ship", "ship", "wake"]
    summary = client.get("/api/v1/models/ships/summary").json()
    assert summary["runs"] == {"succeeded": 1} and summary["classes"] == {"ship": 3, "wake": 1}
    assert summary["labelled_area_m2"] > 0

    failed = until(client, matches["broken"], {"succeeded", "failed"})
    assert failed["state"] == "failed" and "model weights are corrupt" in failed["error"]
    assert "model weights are corrupt" in client.get(f"/api/v1/runs/{failed['id']}/logs").json()["stderr"]

    by_cli = until(client, matches["by-cli"], {"succeeded", "failed"})
    cli_logs = client.get(f"/api/v1/runs/{by_cli['id']}/logs").json()
    assert by_cli["state"] == "succeeded", (by_cli, cli_logs)
    assert "4 features" in cli_logs["stdout"]

    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    with ctx.uow() as session:
        topics = [e.topic for e in log.read(session, prefixes=["geo."], subject="ships")]
    assert topics == ["geo.run.queued", "geo.run.started", "geo.results.available", "geo.run.succeeded"]
