"""A run's command in the sandbox, taken and settled as the worker's workflow does (in process): what it
sees, how each failure is recorded with its logs, cancel and retry."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient

from modelyard.context import AppContext
from modelyard.durable import log
from modelyard.geo import execution
from tests.geo.runs_helpers import command_model, queue_run, take


@pytest.fixture
def ctx(api: TestClient) -> AppContext:
    found: AppContext = api.ctx  # type: ignore[attr-defined]
    return found


def run_once(ctx: AppContext, run_id: int) -> str | None:
    started = take(ctx, run_id)
    return execution.finish_run(ctx, started, execution.execute(ctx, started))


def test_a_failing_command_fails_the_run_with_its_stderr_and_logs(
    api: TestClient, ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_DATABASE_URL", "postgresql://user:secret@db/prod")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cret")
    command_model(api, env={"MODE": "fail"})
    run_id = queue_run(api)
    assert run_once(ctx, run_id) == "failed"
    run = api.get(f"/api/v1/runs/{run_id}").json()
    assert run["state"] == "failed" and run["attempts"] == 1 and run["finished_at"]
    assert run["error"].endswith("exited with status 4: model weights are corrupt")
    logs = api.get(f"/api/v1/runs/{run_id}/logs").json()
    assert "model weights are corrupt" in logs["stderr"]
    assert "secrets seen: []" in logs["stdout"]  # no database URL, no storage credentials
    with ctx.uow() as session:
        topics = [(e.topic, e.data["model"]) for e in log.read(session, prefixes=["geo.run."])]
    assert topics == [("geo.run.queued", "ships"), ("geo.run.started", "ships"), ("geo.run.failed", "ships")]


def test_a_command_that_exits_without_reporting_fails(api: TestClient, ctx: AppContext) -> None:
    command_model(api, env={"MODE": "silent"})
    run_id = queue_run(api)
    assert run_once(ctx, run_id) == "failed"
    assert "without reporting results" in api.get(f"/api/v1/runs/{run_id}").json()["error"]


def test_a_command_past_its_timeout_fails_and_its_token_expires(api: TestClient, ctx: AppContext) -> None:
    command_model(api, env={"MODE": "sleep"}, timeout_seconds=1)
    run_id = queue_run(api)
    began = time.monotonic()
    started = take(ctx, run_id)
    assert execution.finish_run(ctx, started, execution.execute(ctx, started)) == "failed"
    assert time.monotonic() - began < 15
    assert "timeout" in api.get(f"/api/v1/runs/{run_id}").json()["error"]
    late = api.post(
        f"/api/v1/runs/{run_id}/results", headers={"Authorization": f"Bearer {started.token}"}, json={}
    )
    assert late.status_code == 410


def test_a_running_commands_logs_are_viewable_and_cancelling_it_kills_it(
    api: TestClient, ctx: AppContext
) -> None:
    command_model(api, env={"MODE": "sleep"})
    run_id = queue_run(api)
    started = take(ctx, run_id)
    outcome: list[str | None] = []
    worker = threading.Thread(
        target=lambda: outcome.append(execution.finish_run(ctx, started, execution.execute(ctx, started)))
    )
    worker.start()
    deadline = time.monotonic() + 30
    while "secrets seen" not in api.get(f"/api/v1/runs/{run_id}/logs").json()["stdout"]:
        assert time.monotonic() < deadline, "the running command's output never showed"
        time.sleep(0.1)
    assert api.get(f"/api/v1/runs/{run_id}").json()["state"] == "running"
    resp = api.post(f"/api/v1/runs/{run_id}/cancel")
    assert resp.status_code == 200 and resp.json()["state"] == "cancelled"
    worker.join(15)
    assert not worker.is_alive() and outcome == [None]  # killed; the cancel stands
    assert api.get(f"/api/v1/runs/{run_id}").json()["state"] == "cancelled"
    assert api.post(f"/api/v1/runs/{run_id}/cancel").status_code == 409
    again = api.post(f"/api/v1/runs/{run_id}/retry").json()
    assert again["state"] == "queued" and again["attempts"] == 0


def test_runs_are_listed_with_filters(api: TestClient, ctx: AppContext) -> None:
    command_model(api, env={"MODE": "fail"})
    first = queue_run(api)
    second = queue_run(api, stac_id="S2B_31TFJ_20260606_0_L2A")
    run_once(ctx, first)
    listed = api.get("/api/v1/runs", params={"model": "ships"}).json()
    assert [r["id"] for r in listed["items"]] == [second, first] and listed["total"] == 2
    assert [r["id"] for r in api.get("/api/v1/runs", params={"state": "failed"}).json()["items"]] == [first]
    assert api.get("/api/v1/runs", params={"state": "bogus"}).status_code == 422
    assert api.get("/api/v1/runs/999").status_code == 404
